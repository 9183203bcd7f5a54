// Nodemailer's smtp-server (npm `smtp-server`) on loopback, for Outbound's tests of a TLS mode
// that does not match the port: with --secure it speaks implicit TLS from the first byte (as on
// port 465), else plain text with STARTTLS (as on 587). It accepts any sender and recipient and
// discards every message.
//
//   node server.js [--secure] [--port N] --cert CHAIN.pem --key KEY.pem
//
// Prints `READY <port>` on stdout once listening (--port 0, the default, picks a free port);
// exits when its standard input closes (the test that started it ended) or on SIGTERM.
'use strict';

const fs = require('fs');
const { SMTPServer } = require('smtp-server');

const opts = { secure: false, port: 0, cert: null, key: null };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  switch (args[i]) {
    case '--secure': opts.secure = true; break;
    case '--port': opts.port = Number(args[++i]); break;
    case '--cert': opts.cert = args[++i]; break;
    case '--key': opts.key = args[++i]; break;
    default:
      console.error(`unknown argument ${args[i]}`);
      process.exit(2);
  }
}
if (!opts.cert || !opts.key) {
  console.error('usage: node server.js [--secure] [--port N] --cert CHAIN.pem --key KEY.pem');
  process.exit(2);
}

const server = new SMTPServer({
  secure: opts.secure,
  key: fs.readFileSync(opts.key),
  cert: fs.readFileSync(opts.cert),
  name: opts.secure ? 'implicit.smtp-server.test' : 'starttls.smtp-server.test',
  authOptional: true,
  logger: false,
  onData(stream, _session, callback) {
    stream.on('end', () => callback());
    stream.resume();
  },
});
// Connections the client closed mid-handshake (its probes do) are no news; set
// SMTP_SERVER_DEBUG to see them.
server.on('error', (err) => {
  if (process.env.SMTP_SERVER_DEBUG) console.error(`smtp-server: ${err.message}`);
});

const shutdown = () => server.close(() => process.exit(0));
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();

server.listen(opts.port, '127.0.0.1', () => {
  console.log(`READY ${server.server.address().port}`);
});
