// Submits one message with nodemailer, the way a Node.js program would: an SMTP transport
// with STARTTLS required (`secure: false, requireTLS: true`) and AUTH LOGIN/PLAIN, or
// implicit TLS (`secure: true`). Reads its settings from one JSON argument; prints the
// transport's info as JSON. Used by crates/outbound-live-tests/tests/relay_clients.rs.
import nodemailer from "nodemailer";

const opts = JSON.parse(process.argv[2]);
const transport = nodemailer.createTransport({
  host: opts.host,
  port: opts.port,
  secure: Boolean(opts.secure),
  requireTLS: Boolean(opts.requireTLS),
  auth: opts.user ? { user: opts.user, pass: opts.pass } : undefined,
  authMethod: opts.authMethod,
  tls: { ca: opts.ca, servername: "localhost" },
  name: "nodemailer.client.test",
});
try {
  const info = await transport.sendMail({
    from: opts.from,
    to: opts.to,
    subject: opts.subject,
    text: opts.text,
    messageId: opts.messageId,
  });
  console.log(JSON.stringify({ ok: true, response: info.response, envelope: info.envelope, messageId: info.messageId }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e), responseCode: e.responseCode, response: e.response }));
  process.exit(1);
}
