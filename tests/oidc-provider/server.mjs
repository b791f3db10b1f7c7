// A real, OpenID Certified provider (panva/oidc-provider) for oidc-gateway's
// interoperability tests (tests/real_provider.rs). Development use only.
//
//   node server.mjs --port 0 --client-secret S \
//     --redirect-uri http://127.0.0.1:P/oauth2/callback [--redirect-uri ...] \
//     [--post-logout-redirect-uri URI ...] [--post-logout-origin http://127.0.0.1:P] \
//     [--backchannel-logout-uri URI] [--resource urn:oidc-gateway:api] [--no-default-resource]
//     [--client-auth private_key_jwt --client-key KEY.pem [--client-key-kid KID]]
//
// Every option can also come from the environment: OP_PORT, OP_CLIENT_SECRET,
// OP_REDIRECT_URIS (space separated), OP_POST_LOGOUT_REDIRECT_URIS,
// OP_POST_LOGOUT_ORIGIN, OP_BACKCHANNEL_LOGOUT_URI, OP_RESOURCE, OP_CLIENT_AUTH,
// OP_CLIENT_KEY, OP_CLIENT_KEY_KID.
//
// Once it serves, it prints exactly one line
//   listening on http://127.0.0.1:PORT
// to stdout; the issuer is that URL. Everything else (request log, provider
// events, errors) also goes to stdout/stderr for diagnosis.
//
// What it is:
// * one confidential client `gateway` (client_secret_basic), code flow +
//   refresh_token (+ client_credentials), PKCE S256 required; with
//   `--client-auth private_key_jwt` the client authenticates with JWT
//   assertions instead (RFC 7523) and its registered `jwks` is the public half
//   of `--client-key` (a PEM public or private key, RSA or EC; a private key
//   file is only read for its public half), with `kid` `--client-key-kid`
//   when given; `--client-secret` is then not needed;
// * devInteractions: any login name logs in with any password; the account id
//   is the login name; claims: email `<id>@example.com`, email_verified,
//   name, preferred_username, groups (["users"], plus "admins" when the id
//   starts with "admin");
// * claims are put in the ID token too (conformIdTokenClaims: false);
// * resource indicators: every authorization request defaults to the resource
//   `--resource` (default `urn:oidc-gateway:api`), and its access tokens are
//   RS256 JWTs (`typ: at+jwt`) with `aud` = that resource, carrying
//   email / preferred_username / groups as extra claims;
// * rpInitiatedLogout (end_session_endpoint), backchannelLogout.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OP_PORT ?? '0' },
    'client-secret': { type: 'string', default: process.env.OP_CLIENT_SECRET },
    'redirect-uri': { type: 'string', multiple: true },
    'post-logout-redirect-uri': { type: 'string', multiple: true },
    'post-logout-origin': { type: 'string', default: process.env.OP_POST_LOGOUT_ORIGIN },
    'backchannel-logout-uri': { type: 'string', default: process.env.OP_BACKCHANNEL_LOGOUT_URI },
    resource: { type: 'string', default: process.env.OP_RESOURCE ?? 'urn:oidc-gateway:api' },
    'no-default-resource': { type: 'boolean', default: false },
    'access-token-ttl': { type: 'string', default: process.env.OP_ACCESS_TOKEN_TTL ?? '600' },
    'client-auth': { type: 'string', default: process.env.OP_CLIENT_AUTH ?? 'client_secret_basic' },
    'client-key': { type: 'string', default: process.env.OP_CLIENT_KEY },
    'client-key-kid': { type: 'string', default: process.env.OP_CLIENT_KEY_KID },
  },
  strict: true,
});

const fromEnvList = (name) => (process.env[name] ? process.env[name].split(/\s+/).filter(Boolean) : []);
const redirectUris = args['redirect-uri'] ?? fromEnvList('OP_REDIRECT_URIS');
const postLogoutRedirectUris = args['post-logout-redirect-uri'] ?? fromEnvList('OP_POST_LOGOUT_REDIRECT_URIS');
const clientSecret = args['client-secret'];
const resource = args.resource;
const postLogoutOrigin = args['post-logout-origin'];
const backchannelLogoutUri = args['backchannel-logout-uri'];
// Access-token lifetime in seconds (short values exercise the RP's refresh).
const accessTokenTTL = Number.parseInt(args['access-token-ttl'], 10);

function die(msg) {
  console.error(`server.mjs: ${msg}`);
  process.exit(2);
}
const clientAuth = args['client-auth'];
if (!['client_secret_basic', 'client_secret_post', 'private_key_jwt'].includes(clientAuth)) {
  die(`bad --client-auth ${clientAuth}`);
}
const privateKeyJwt = clientAuth === 'private_key_jwt';
if (privateKeyJwt && !args['client-key']) die('--client-auth private_key_jwt needs --client-key');
if (!privateKeyJwt && !clientSecret) die('--client-secret (or OP_CLIENT_SECRET) is required');
if (redirectUris.length === 0) die('at least one --redirect-uri (or OP_REDIRECT_URIS) is required');
const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) die(`bad --port ${args.port}`);

// Signing key made at start: one RS256 key, published at jwks_uri.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `test-${crypto.randomBytes(6).toString('hex')}`,
  alg: 'RS256',
  use: 'sig',
};

const accountClaims = (id) => ({
  sub: id,
  email: `${id}@example.com`,
  email_verified: true,
  name: `Test User ${id}`,
  preferred_username: id,
  groups: id.startsWith('admin') ? ['users', 'admins'] : ['users'],
});

// Bind first (port 0 = the OS picks), so the issuer can name the real port.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

// The client's registered public key for private_key_jwt.
const clientJwks = privateKeyJwt ? {
  keys: [{
    ...crypto.createPublicKey(fs.readFileSync(args['client-key'])).export({ format: 'jwk' }),
    use: 'sig',
    ...(args['client-key-kid'] ? { kid: args['client-key-kid'] } : {}),
  }],
} : undefined;

const client = {
  client_id: 'gateway',
  ...(privateKeyJwt ? { jwks: clientJwks } : { client_secret: clientSecret }),
  client_name: 'oidc-gateway (interop test)',
  redirect_uris: redirectUris,
  post_logout_redirect_uris: postLogoutRedirectUris,
  grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
  response_types: ['code'],
  token_endpoint_auth_method: clientAuth,
  id_token_signed_response_alg: 'RS256',
  ...(backchannelLogoutUri ? {
    backchannel_logout_uri: backchannelLogoutUri,
    backchannel_logout_session_required: true,
  } : {}),
};

const configuration = {
  clients: [client],
  jwks: { keys: [signingJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'email', 'profile', 'offline_access'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'groups'],
  },
  conformIdTokenClaims: false,
  // oidc-provider refuses outgoing requests (back-channel logout) to
  // special-use addresses such as loopback (SSRF protection); the RPs under
  // test live on 127.0.0.1, so send them without that dispatcher.
  fetch(url, { dispatcher, ...options }) {
    return globalThis.fetch(url, options);
  },
  pkce: { required: () => true },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return accountClaims(id);
      },
    };
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
    const { email, preferred_username: preferredUsername, groups } = accountClaims(token.accountId);
    return { email, preferred_username: preferredUsername, groups };
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No `resource` parameter: use ours (unless --no-default-resource).
      async defaultResource(ctx, _client, oneOf) {
        if (oneOf) return oneOf;
        return args['no-default-resource'] ? undefined : resource;
      },
      // Token requests without `resource` get an access token for the
      // resource granted at authorization (so the gateway's ordinary code
      // exchange yields a JWT access token for `resource`).
      async useGrantedResource() {
        return true;
      },
      async getResourceServerInfo(ctx, resourceIndicator) {
        if (resourceIndicator !== resource) {
          throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        }
        return {
          scope: 'api:read',
          audience: resource,
          accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    AccessToken: accessTokenTTL,
    AuthorizationCode: 60,
    IdToken: 10 * 60,
    RefreshToken: 24 * 60 * 60,
    Interaction: 10 * 60,
    Session: 60 * 60,
    Grant: 60 * 60,
  },
};

const provider = new Provider(issuer, configuration);

// The gateway chooses its own post_logout_redirect_uri (somewhere on its
// public origin); accept any URI on that origin besides the registered ones.
if (postLogoutOrigin) {
  const origin = new URL(postLogoutOrigin).origin;
  const registered = provider.Client.prototype.postLogoutRedirectUriAllowed;
  provider.Client.prototype.postLogoutRedirectUriAllowed = function allowed(value) {
    return registered.call(this, value) || URL.parse(value)?.origin === origin;
  };
}

for (const event of [
  'server_error',
  'authorization.error',
  'grant.error',
  'end_session.error',
  'userinfo.error',
  'backchannel.error',
  'introspection.error',
  'revocation.error',
  'jwks.error',
  'discovery.error',
]) {
  provider.on(event, (ctx, err, ...rest) => {
    const e = err instanceof Error ? err : rest.find((x) => x instanceof Error) ?? err;
    console.error(`[op] ${event}: ${e?.name ?? ''} ${e?.message ?? e} ${e?.error_description ?? ''}`);
  });
}
provider.on('backchannel.success', (_client, accountId, sid) => {
  console.log(`[op] backchannel.success account=${accountId} sid=${sid}`);
});
provider.on('grant.success', (ctx) => {
  console.log(`[op] grant.success grant_type=${ctx.oidc.params?.grant_type}`);
});
provider.on('end_session.success', () => console.log('[op] end_session.success'));

const callback = provider.callback();
server.on('request', (req, res) => {
  const started = Date.now();
  res.on('finish', () => {
    console.log(`[op] ${req.method} ${req.url} -> ${res.statusCode} (${Date.now() - started} ms)`);
  });
  callback(req, res);
});

const shutdown = () => server.close(() => process.exit(0));
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

console.log(`listening on ${issuer}`);
