#!/usr/bin/env node
// A real OAuth2 token server for Outbound's tests: npm `oauth2-mock-server` (RS256 JWTs) behind a
// small wrapper that adds what the tests and Dovecot need. Loopback only.
//
//   node testenv/oauth/token-server.js [--port 0] [--host 127.0.0.1] [--lifetime 3600]
//        [--state-dir DIR] [--email alice@example.test] [--delay-ms 0]
//        [--no-rotate-refresh-tokens] [--exit-with-stdin]
//        [--issuer URL] [--export-key-dir DIR]
//
// Prints `READY <port>` on stdout once it listens (after the key files are written).
//
// --issuer URL           the `iss` claim (default http://localhost:PORT). With --export-key-dir,
//                        lets a private instance (its own port, lifetime, stats and faults) issue
//                        tokens that the shared Dovecot accepts: Dovecot trusts one issuer
//                        (http://localhost:8089) and looks keys up by kid in one directory, where
//                        several keys can coexist.
// --export-key-dir DIR   also write the public key as DIR/default/RS256/<kid> (Dovecot's
//                        local_validation_key_dict layout), e.g. the shared instance's
//                        /tmp/outbound-testenv/oauth/keys. Only that file is written there (not
//                        issuer/port/jwks.json); it is removed on SIGTERM/SIGINT/stdin close.
//
// Token endpoints (all accept the same form-encoded requests):
//   POST /token                            generic / Google-shaped
//   POST /{tenant}/oauth2/v2.0/token       Microsoft-shaped (point the authority at this server)
// Grants: client_credentials, refresh_token (each use rotates the refresh token: the old one is
// then refused with invalid_grant, like a rotating provider), password, authorization_code.
// Every token: exp = now + lifetime, `expires_in` = lifetime, a `sub` claim and an `email` claim
// (from the request's `username` or `login_hint`, else --email).
//
// Control endpoints for tests (JSON):
//   GET  /health                      {"ok":true,"issuer":...}
//   GET  /stats                       {"token_requests":N,"by_path":{...},"by_grant":{...},"recent":[...]}
//   POST /stats/reset
//   GET  /config, POST /config        {"lifetime":S,"email":"...","delay_ms":MS,"rotate_refresh_tokens":bool,
//                                      "advertised_lifetime":S|null (expires_in, when it must differ from exp)}
//   GET  /faults, POST /faults        {"mode":"none"|"500"|"status"|"malformed"|"no_token"|"html"|"stall"|"error",
//                                      "status":N, "error":"...", "error_description":"...",
//                                      "error_codes":[...], "body":{...}|"...", "times":N}
//        `times` applies the fault to the next N token requests only, then goes back to `none`.
// Requests are counted whatever the fault mode (a stalled request counts too).
//
// Files written under --state-dir (atomically), for Dovecot's oauth2 passdb and for scripts:
//   keys/default/RS256/<kid>   the issuer's public key as PEM (local_validation_key_dict layout)
//   jwks.json                  the public JWK set
//   issuer                     the issuer URL (http://localhost:PORT)
//   port                       the bound port

import fs from 'node:fs';
import path from 'node:path';
import { createPublicKey, randomUUID } from 'node:crypto';
import express from 'express';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

// ------------------------------------------------------------------------------------ arguments
function parseArgs(argv) {
  const opts = {
    port: 0,
    host: '127.0.0.1',
    lifetime: 3600,
    stateDir: null,
    email: 'alice@example.test',
    delayMs: 0,
    rotateRefreshTokens: true,
    exitWithStdin: false,
    issuer: null,
    exportKeyDir: null,
  };
  const need = (i, name) => {
    if (i + 1 >= argv.length) die(`${name} needs a value`);
    return argv[i + 1];
  };
  const int = (value, name, min) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) die(`${name} must be a whole number >= ${min} (got '${value}')`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--port': opts.port = int(need(i, a), a, 0); i++; break;
      case '--host': opts.host = need(i, a); i++; break;
      case '--lifetime': opts.lifetime = int(need(i, a), a, 1); i++; break;
      case '--state-dir': opts.stateDir = path.resolve(need(i, a)); i++; break;
      case '--email': opts.email = need(i, a); i++; break;
      case '--delay-ms': opts.delayMs = int(need(i, a), a, 0); i++; break;
      case '--issuer': opts.issuer = need(i, a); i++; break;
      case '--export-key-dir': opts.exportKeyDir = path.resolve(need(i, a)); i++; break;
      case '--no-rotate-refresh-tokens': opts.rotateRefreshTokens = false; break;
      case '--exit-with-stdin': opts.exitWithStdin = true; break;
      case '-h': case '--help':
        process.stdout.write(fs.readFileSync(new URL(import.meta.url)).toString().split('\n')
          .filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n') + '\n');
        process.exit(0);
        break;
      default: die(`unknown argument '${a}' (see --help)`);
    }
  }
  if (!['127.0.0.1', 'localhost', '::1'].includes(opts.host)) {
    die(`--host must be a loopback address (127.0.0.1, ::1 or localhost), got '${opts.host}'`);
  }
  return opts;
}

function die(msg) {
  process.stderr.write(`[token-server] ERROR: ${msg}\n`);
  process.exit(2);
}

function log(msg) {
  process.stderr.write(`[token-server] ${msg}\n`);
}

const opts = parseArgs(process.argv.slice(2));

// ------------------------------------------------------------------------------------ state
const config = {
  lifetime: opts.lifetime,
  email: opts.email,
  delay_ms: opts.delayMs,
  rotate_refresh_tokens: opts.rotateRefreshTokens,
  // What `expires_in` claims, when it should differ from the token's real `exp` (null: the
  // same). A token that dies before its advertised lifetime is what a revoked or clock-skewed
  // token looks like to a client.
  advertised_lifetime: null,
};
const NO_FAULT = Object.freeze({ mode: 'none' });
let fault = NO_FAULT;
const FAULT_MODES = ['none', '500', 'status', 'malformed', 'no_token', 'html', 'stall', 'error'];

let stats = freshStats();
function freshStats() {
  return { token_requests: 0, by_path: {}, by_grant: {}, recent: [] };
}
const usedRefreshTokens = new Set();
const stalled = new Set();

// ------------------------------------------------------------------------------------ issuer
const issuer = new OAuth2Issuer();
const jwk = await issuer.keys.generate('RS256');
const service = new OAuth2Service(issuer);

function emailFor(body) {
  const candidates = [body?.username, body?.login_hint];
  for (const c of candidates) if (typeof c === 'string' && c.length > 0) return c;
  return config.email;
}

service.on('beforeTokenSigning', (token, req) => {
  const now = Math.floor(Date.now() / 1000);
  const body = req.body ?? {};
  const email = emailFor(body);
  token.payload.iat = now;
  token.payload.nbf = now - 10;
  token.payload.exp = now + config.lifetime;
  token.payload.email = email;
  // Dovecot insists on `sub`. The mock sets `sub: "johndoe"` for user grants; make it the user.
  token.payload.sub = email;
  if (typeof body.client_id === 'string' && body.client_id.length > 0) {
    token.payload.client_id = body.client_id;
  }
  if (token.payload.aud === undefined && typeof body.scope === 'string') {
    // Microsoft puts the resource into `aud`; derive it from a `<resource>/.default` scope.
    const first = body.scope.split(' ')[0];
    if (first.endsWith('/.default')) token.payload.aud = first.slice(0, -'/.default'.length);
  }
  token.payload.jti = randomUUID();
});

service.on('beforeResponse', (response, req) => {
  if (response.statusCode !== 200 || typeof response.body !== 'object') return;
  const advertised = config.advertised_lifetime ?? config.lifetime;
  response.body.expires_in = advertised;
  response.body.ext_expires_in = advertised;
  // The mock answers `scope: "dummy"` to user grants that named no scope; say nothing instead.
  if (response.body.scope === undefined || req.body?.scope === undefined) delete response.body.scope;
  const grant = req.body?.grant_type;
  if (grant === 'refresh_token' && !config.rotate_refresh_tokens) {
    delete response.body.refresh_token;
  }
  if (grant === 'client_credentials') delete response.body.refresh_token;
});

// ------------------------------------------------------------------------------------ app
const app = express();
app.disable('x-powered-by');
app.use(express.urlencoded({ extended: false }));
app.use(express.json());

// Microsoft-shaped token path -> the mock's /token.
const MS_TOKEN_PATH = /^\/([^/]+)\/oauth2\/v2\.0\/token\/?$/;
app.use((req, _res, next) => {
  req.originalPath = req.path;
  if (req.method === 'POST' && MS_TOKEN_PATH.test(req.path)) {
    req.url = '/token';
  }
  next();
});

app.get('/health', (_req, res) => res.json({ ok: true, issuer: issuer.url }));

app.get('/stats', (_req, res) => res.json(stats));
app.post('/stats/reset', (_req, res) => {
  stats = freshStats();
  res.json(stats);
});

app.get('/config', (_req, res) => res.json(config));
app.post('/config', (req, res) => {
  const b = req.body ?? {};
  if (b.lifetime !== undefined) {
    if (!Number.isInteger(b.lifetime) || b.lifetime < 1) return res.status(400).json({ error: 'lifetime must be an integer >= 1' });
    config.lifetime = b.lifetime;
  }
  if (b.delay_ms !== undefined) {
    if (!Number.isInteger(b.delay_ms) || b.delay_ms < 0) return res.status(400).json({ error: 'delay_ms must be an integer >= 0' });
    config.delay_ms = b.delay_ms;
  }
  if (b.advertised_lifetime !== undefined) {
    const a = b.advertised_lifetime;
    if (a !== null && (!Number.isInteger(a) || a < 1)) return res.status(400).json({ error: 'advertised_lifetime must be null or an integer >= 1' });
    config.advertised_lifetime = a;
  }
  if (b.email !== undefined) config.email = String(b.email);
  if (b.rotate_refresh_tokens !== undefined) config.rotate_refresh_tokens = Boolean(b.rotate_refresh_tokens);
  log(`config ${JSON.stringify(config)}`);
  res.json(config);
});

app.get('/faults', (_req, res) => res.json(fault));
app.post('/faults', (req, res) => {
  const b = req.body ?? {};
  const mode = String(b.mode ?? 'none');
  if (!FAULT_MODES.includes(mode)) {
    return res.status(400).json({ error: `mode must be one of ${FAULT_MODES.join(', ')}` });
  }
  if (b.times !== undefined && (!Number.isInteger(b.times) || b.times < 1)) {
    return res.status(400).json({ error: 'times must be an integer >= 1' });
  }
  fault = mode === 'none' ? NO_FAULT : { ...b, mode };
  if (mode === 'none') releaseStalled();
  log(`fault ${JSON.stringify({ mode, status: b.status, error: b.error, times: b.times })}`);
  res.json(fault);
});

app.post('/token', (req, res, next) => {
  const body = req.body ?? {};
  const grant = typeof body.grant_type === 'string' ? body.grant_type : '(none)';
  stats.token_requests += 1;
  stats.by_path[req.originalPath] = (stats.by_path[req.originalPath] ?? 0) + 1;
  stats.by_grant[grant] = (stats.by_grant[grant] ?? 0) + 1;
  // Never record secrets: only whether they were present.
  stats.recent.push({
    path: req.originalPath,
    grant_type: grant,
    client_id: body.client_id ?? null,
    scope: body.scope ?? null,
    client_secret: typeof body.client_secret === 'string' && body.client_secret.length > 0,
    basic_auth: typeof req.headers.authorization === 'string',
    refresh_token: typeof body.refresh_token === 'string' && body.refresh_token.length > 0,
    at: new Date().toISOString(),
  });
  if (stats.recent.length > 50) stats.recent.shift();

  if (fault.mode !== 'none') {
    const f = fault;
    if (Number.isInteger(f.times)) {
      f.times -= 1;
      if (f.times <= 0) fault = NO_FAULT;
    }
    return applyFault(f, req, res);
  }

  if (grant === 'refresh_token') {
    const rt = body.refresh_token;
    if (typeof rt !== 'string' || rt.length === 0) {
      return res.status(400).json(msError(
        'invalid_request', 900144,
        "AADSTS900144: The request body must contain the following parameter: 'refresh_token'.",
      ));
    }
    if (usedRefreshTokens.has(rt)) {
      return res.status(400).json(msError(
        'invalid_grant', 70008,
        'AADSTS70008: The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.',
      ));
    }
    if (config.rotate_refresh_tokens) usedRefreshTokens.add(rt);
  }

  if (config.delay_ms > 0) {
    setTimeout(next, config.delay_ms);
  } else {
    next();
  }
});

app.use(service.requestHandler);

function msError(error, code, description) {
  const trace = randomUUID();
  const correlation = randomUUID();
  const timestamp = new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  return {
    error,
    error_description: `${description}\r\nTrace ID: ${trace}\r\nCorrelation ID: ${correlation}\r\nTimestamp: ${timestamp}`,
    error_codes: [code],
    timestamp,
    trace_id: trace,
    correlation_id: correlation,
    error_uri: `https://login.microsoftonline.com/error?code=${code}`,
  };
}

function applyFault(f, req, res) {
  switch (f.mode) {
    case '500':
    case 'status': {
      const status = Number.isInteger(f.status) ? f.status : 500;
      if (f.body !== undefined) return sendBody(res, status, f.body);
      return res.status(status).json(msError(
        'server_error', 50000,
        'AADSTS50000: There was an error issuing a token or an issue with our sign-in service.',
      ));
    }
    case 'error': {
      const status = Number.isInteger(f.status) ? f.status : 400;
      if (f.body !== undefined) return sendBody(res, status, f.body);
      const error = f.error ?? 'invalid_request';
      const codes = Array.isArray(f.error_codes) ? f.error_codes : [];
      const out = { error };
      if (f.error_description !== undefined) out.error_description = f.error_description;
      if (codes.length > 0) {
        out.error_codes = codes;
        out.timestamp = new Date().toISOString();
        out.trace_id = randomUUID();
        out.correlation_id = randomUUID();
        out.error_uri = `https://login.microsoftonline.com/error?code=${codes[0]}`;
      }
      return res.status(status).json(out);
    }
    case 'malformed':
      // A 200 whose JSON breaks off inside the token (as a truncating proxy would produce).
      res.status(200).type('application/json');
      return res.send('{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.TRUNCATED-CANARY');
    case 'no_token':
      return res.status(200).json({ token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599 });
    case 'html':
      res.status(200).type('text/html');
      return res.send('<html><body><h1>Sign in to the network</h1></body></html>');
    case 'stall':
      // Never answer; the socket stays open until the client gives up or the fault is cleared.
      stalled.add(res);
      res.on('close', () => stalled.delete(res));
      return undefined;
    default:
      return res.status(500).json({ error: 'server_error', error_description: `unknown fault ${f.mode}` });
  }
}

function sendBody(res, status, body) {
  if (typeof body === 'string') {
    res.status(status).type(body.trimStart().startsWith('{') ? 'application/json' : 'text/plain');
    return res.send(body);
  }
  return res.status(status).json(body);
}

function releaseStalled() {
  for (const res of stalled) res.destroy();
  stalled.clear();
}

// ------------------------------------------------------------------------------------ files
function writeAtomic(file, content, mode = 0o644) {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, content, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}

function publicPem() {
  return createPublicKey({ key: { ...jwk }, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
}

function exportKeys(dir, issuerUrl, port) {
  const publicJwk = issuer.keys.toJSON(false);
  const pem = publicPem();
  writeAtomic(path.join(dir, 'keys', 'default', 'RS256', jwk.kid), pem);
  writeAtomic(path.join(dir, 'jwks.json'), JSON.stringify({ keys: publicJwk }, null, 2) + '\n');
  writeAtomic(path.join(dir, 'issuer'), `${issuerUrl}\n`);
  writeAtomic(path.join(dir, 'port'), `${port}\n`);
}

// ------------------------------------------------------------------------------------ start
let exportedKey = null;
function removeExportedKey() {
  if (exportedKey === null) return;
  try { fs.unlinkSync(exportedKey); } catch { /* already gone */ }
  exportedKey = null;
}
const server = app.listen(opts.port, opts.host);
server.on('error', (err) => die(`cannot listen on ${opts.host}:${opts.port}: ${err.message}`));
server.on('listening', () => {
  const { port } = server.address();
  issuer.url = opts.issuer ?? `http://localhost:${port}`;
  if (opts.stateDir) exportKeys(opts.stateDir, issuer.url, port);
  if (opts.exportKeyDir) {
    exportedKey = path.join(opts.exportKeyDir, 'default', 'RS256', jwk.kid);
    writeAtomic(exportedKey, publicPem());
  }
  log(`listening on ${opts.host}:${port}, issuer ${issuer.url}, lifetime ${config.lifetime} s, kid ${jwk.kid.slice(0, 12)}…`);
  process.stdout.write(`READY ${port}\n`);
});

function shutdown(signal) {
  log(`${signal}: stopping`);
  removeExportedKey();
  releaseStalled();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (opts.exitWithStdin) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}
