#!/usr/bin/env node
// A local Sigstore instance for tests: Fulcio, Rekor (v1) and a TSA from @sigstore/mock,
// served over plain HTTP on 127.0.0.1, with the trusted root, signing config and client
// trust config that describe it written to --out.
//
// Usage: node sigstore-mock-server.js --out DIR [--port N] [--rekor-time-offset SECONDS]
//                                     [--dsse canonical|echo]
//
// The mock Rekor logs the proposed entry as its body.  For hashedrekord that is the
// canonical form; for DSSE real Rekor stores payload hash + signatures instead, so with
// --dsse canonical (the default) this wrapper rewrites a DSSE proposal the way Rekor does
// before logging it; --dsse echo keeps the mock's raw echo.  --rekor-time-offset skews the
// log's integrated time (to test certificates that expired before their entry was logged).
// When ready it prints one JSON line on stdout: {"url", "trustedRoot", "signingConfig",
// "trustConfig"}.  It stops on SIGTERM/SIGINT or when stdin closes.
//
// Fulcio also answers under /sct/<mode>/api/v2/signingCert with certificates from the same
// CA whose embedded SCT is wrong, for the verifier's attack tests: `none` (no SCT),
// `forged` (claims the trusted CT log's id, signed with another key), `unknown-log` (a
// valid SCT from a CT log the trusted root does not list) and `mismatched` (signed by the
// trusted CT log, but over other data than this certificate).  Under
// /ca/stranger/api/v2/signingCert a CA the trusted root does not list issues certificates
// with a valid SCT from the trusted CT log.
//
// For the verifier's certificate and log tests, two more routes let a test choose what
// real Fulcio and Rekor would decide themselves.  POST /issue/api/v2/signingCert takes
// the usual request plus {"certificate": {"san": "email"|"uri", "eku": ["codeSigning",
// "clientAuth", ...] (empty: no EKU extension), "notBefore": unix seconds, "lifetime":
// seconds}}: the trusted CA issues that leaf (identity from the token's `sub`, OIDC issuer
// extensions from its `iss`, as the mock Fulcio does) with a valid SCT from the trusted CT
// log dated notBefore.  POST /time/<unix seconds>/api/v1/log/entries logs the entry with
// that integrated time.  The CA root and every validFor start a day before the server,
// so certificates and entries may be back-dated.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const mock = require('@sigstore/mock');

// The mock's own copies of its certificate libraries (loaded after it: they need its
// reflect-metadata polyfill).
const fromMock = (name) => require(require.resolve(name, { paths: [require.resolve('@sigstore/mock')] }));
const x509 = fromMock('@peculiar/x509');
const asn1js = fromMock('asn1js');
const ISSUER = 'CN=sigstore,O=sigstore.mock'; // the mock CA's name: its leaves' issuer
const ISSUER_EXT_OID_V1 = '1.3.6.1.4.1.57264.1.1';
const ISSUER_EXT_OID_V2 = '1.3.6.1.4.1.57264.1.8';
const SCT_LIST_OID = '1.3.6.1.4.1.11129.2.4.2';
const SIGNING = { name: 'ECDSA', hash: 'SHA-384' };
const DAY = 24 * 3600 * 1000;

function parseArgs(argv) {
  const args = { port: 0, out: null, rekorTimeOffset: 0, dsse: 'canonical' };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === '--port') args.port = Number(value);
    else if (flag === '--out') args.out = value;
    else if (flag === '--rekor-time-offset') args.rekorTimeOffset = Number(value);
    else if (flag === '--dsse') args.dsse = value;
    else throw new Error(`unknown argument ${flag}`);
    i++;
  }
  if (!args.out) throw new Error('--out DIR is required');
  if (!['canonical', 'echo'].includes(args.dsse)) throw new Error('--dsse is canonical or echo');
  return args;
}

function sha256(data) {
  return crypto.createHash('sha256').update(data).digest();
}

// Rekor's dsse/0.0.1 canonical body: hashes of envelope and payload, and each
// signature with its verifier (here: the single verifier submitted with it).
function canonicalDsse(proposed) {
  const content = proposed.spec && proposed.spec.proposedContent;
  if (!content) return proposed;
  const envelope = JSON.parse(content.envelope);
  const verifiers = content.verifiers || [];
  return {
    apiVersion: proposed.apiVersion,
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha256(content.envelope).toString('hex') },
      payloadHash: {
        algorithm: 'sha256',
        value: sha256(Buffer.from(envelope.payload, 'base64')).toString('hex'),
      },
      signatures: envelope.signatures.map((sig, index) => ({
        signature: sig.sig,
        verifier: verifiers[Math.min(index, verifiers.length - 1)],
      })),
    },
  };
}

// Real Fulcio (v2 API) takes the OIDC token from the Authorization header and the CSR as
// base64 of its PEM, as sigstore-python sends them; the mock reads the token from
// credentials.oidcIdentityToken and the CSR as PEM.  Translate the real request.
function fulcioRequest(body, headers) {
  const request = JSON.parse(body);
  const auth = headers.authorization || '';
  if (!request.credentials && auth.toLowerCase().startsWith('bearer ')) {
    request.credentials = { oidcIdentityToken: auth.slice(7).trim() };
  }
  const csr = request.certificateSigningRequest;
  if (typeof csr === 'string' && !csr.includes('-----BEGIN')) {
    request.certificateSigningRequest = Buffer.from(csr, 'base64').toString();
  }
  return request;
}

function timeRange(start) {
  return { start: start.toISOString() };
}

// The mock CA's root, re-issued for the same key and name but valid from `notBefore`
// (the mock dates it at start-up, too late for back-dated leaves).
async function backdatedRoot(ca, notBefore) {
  const keys = ca.keyPair;
  return x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01',
      name: ISSUER,
      notBefore,
      notAfter: new Date(notBefore.getTime() + 366 * DAY),
      signingAlgorithm: SIGNING,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.keyCertSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, ca.crypto),
        await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey, false, ca.crypto),
      ],
    },
    ca.crypto,
  );
}

// The SCT list extension as the mock CA encodes it.
function sctListExtension(sct) {
  const list = Buffer.concat([Buffer.from([0x00, sct.byteLength]), Buffer.from(sct)]);
  return new x509.Extension(SCT_LIST_OID, false, new asn1js.OctetString({ valueHex: list }).toBER(false));
}

// A leaf from the trusted CA with what the request's "certificate" object asks for (see the
// header); everything else as the mock CA issues it.
async function issueChosen(ca, ctKeys, body) {
  const request = JSON.parse(body);
  const chosen = request.certificate || {};
  const claims = JSON.parse(
    Buffer.from(request.credentials.oidcIdentityToken.split('.')[1], 'base64url').toString(),
  );
  const pem = request.publicKeyRequest.publicKey.content;
  const der = Buffer.from(pem.replace(/-{5}(BEGIN|END) .*-{5}/gm, '').replace(/\s/gm, ''), 'base64');
  const key = await ca.crypto.subtle.importKey('spki', der, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']);
  const notBefore = chosen.notBefore !== undefined ? new Date(chosen.notBefore * 1000) : new Date();
  const lifetime = chosen.lifetime !== undefined ? chosen.lifetime : 600;
  const ekus = chosen.eku !== undefined ? chosen.eku : ['codeSigning'];
  for (const name of ekus) {
    if (!x509.ExtendedKeyUsage[name]) throw new Error(`unknown extended key usage ${name}`);
  }
  const sanType = { email: 'email', uri: 'url' }[chosen.san || 'uri'];
  if (!sanType) throw new Error('certificate.san is email or uri');
  const extensions = [
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    ...(ekus.length ? [new x509.ExtendedKeyUsageExtension(ekus.map((name) => x509.ExtendedKeyUsage[name]))] : []),
    new x509.SubjectAlternativeNameExtension([{ type: sanType, value: claims.sub }], true),
    await x509.SubjectKeyIdentifierExtension.create(key, false, ca.crypto),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keyPair.publicKey, false, ca.crypto),
    new x509.Extension(ISSUER_EXT_OID_V1, false, Buffer.from(claims.iss)),
    new x509.Extension(ISSUER_EXT_OID_V2, false, new asn1js.Utf8String({ value: claims.iss }).toBER(false)),
  ];
  const tbs = {
    serialNumber: crypto.randomBytes(8).toString('hex').replace(/^[89a-f]/, '1'),
    notBefore,
    notAfter: new Date(notBefore.getTime() + lifetime * 1000),
    issuer: ISSUER,
    publicKey: key,
    signingAlgorithm: SIGNING,
    signingKey: ca.keyPair.privateKey,
    extensions,
  };
  const preCert = await x509.X509CertificateGenerator.create(tbs, ca.crypto);
  const ctlog = await mock.initializeCTLog(ctKeys, notBefore);
  extensions.push(sctListExtension(await ctlog.log(preCert.rawData, await ca.issuerID)));
  const leaf = await x509.X509CertificateGenerator.create(tbs, ca.crypto);
  const chain = [leaf.toString('pem'), ca.root.toString('pem')];
  return {
    statusCode: 200,
    response: JSON.stringify({ signedCertificateEmbeddedSct: { chain: { certificates: chain } } }),
    contentType: 'application/json',
  };
}

function keyDer(keyObject) {
  return keyObject.export({ format: 'der', type: 'spki' });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const started = new Date(Date.now() - DAY); // see the header: room to back-date
  const server = http.createServer();
  await new Promise((resolve) => server.listen(args.port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;

  const caKeys = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ctKeys = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const tlogKeys = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const tsaKeys = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });

  const ctlog = await mock.initializeCTLog(ctKeys);
  const mockCa = await mock.initializeCA(caKeys, ctlog);
  const ca = new mockCa.constructor({
    keyPair: mockCa.keyPair,
    rootCertificate: await backdatedRoot(mockCa, started),
    ctLog: ctlog,
  });
  const clock =
    args.rekorTimeOffset !== 0 ? new Date(Date.now() + args.rekorTimeOffset * 1000) : undefined;
  const tlog = await mock.initializeTLog(url, tlogKeys, clock);
  const tsa = await mock.initializeTSA(tsaKeys);
  // Same CA key and root certificate, other CT logs (see the header).
  const withLog = (log) =>
    mock.fulcioHandler(new ca.constructor({ keyPair: ca.keyPair, rootCertificate: ca.root, ctLog: log }));
  const strangerKeys = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const forgedLog = await mock.initializeCTLog(strangerKeys);
  forgedLog.logID = ctlog.logID;
  const badFulcio = {
    none: withLog(undefined),
    forged: withLog(forgedLog),
    'unknown-log': withLog(await mock.initializeCTLog(strangerKeys)),
    mismatched: withLog({ log: (preCert) => ctlog.log(preCert, new ArrayBuffer(32)) }),
  };
  const strangerCa = mock.fulcioHandler(
    await mock.initializeCA(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }), ctlog),
  );

  const fulcio = mock.fulcioHandler(ca);
  const rekor = mock.rekorHandler(tlog);
  // Rekor v1 with DSSE proposals rewritten as real Rekor stores them (see the header).
  const logWith = (handler) => async (body) => {
    if (args.dsse === 'canonical') {
      const proposed = JSON.parse(body);
      if (proposed.kind === 'dsse') return handler.fn(JSON.stringify(canonicalDsse(proposed)));
    }
    return handler.fn(body);
  };
  const timestamps = mock.tsaHandler(tsa);

  const routes = {
    // Real Fulcio's v2 API (a gRPC gateway) answers 200; the mock says 201, which sigstore-go
    // (cosign v3) refuses as an error.
    [fulcio.path]: async (body, headers) => {
      const answer = await fulcio.fn(JSON.stringify(fulcioRequest(body, headers)));
      return answer.statusCode === 201 ? { ...answer, statusCode: 200 } : answer;
    },
    [rekor.path]: logWith(rekor),
    [`/issue${fulcio.path}`]: async (body) => issueChosen(ca, ctKeys, body),
    [timestamps.path]: timestamps.fn,
  };

  // Certificates with bad SCTs, and from a CA the trusted root does not list (see the header).
  for (const [mode, handler] of Object.entries(badFulcio)) {
    routes[`/sct/${mode}${handler.path}`] = async (body, headers) =>
      handler.fn(JSON.stringify(fulcioRequest(body, headers)));
  }
  routes[`/ca/stranger${strangerCa.path}`] = async (body, headers) =>
    strangerCa.fn(JSON.stringify(fulcioRequest(body, headers)));

  server.on('request', (req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', async () => {
      const where = req.url.split('?')[0];
      const at = /^\/time\/(-?\d+)(\/api\/v1\/log\/entries)$/.exec(where);
      const route = at
        ? async (body) => logWith(mock.rekorHandler(await mock.initializeTLog(url, tlogKeys, new Date(Number(at[1]) * 1000))))(body)
        : routes[where];
      if (req.method !== 'POST' || !route) {
        res.writeHead(req.method === 'GET' && req.url === '/healthz' ? 200 : 404);
        res.end();
        return;
      }
      try {
        const body = Buffer.concat(chunks).toString();
        const { statusCode, response, contentType } = await route(body, req.headers);
        const headers = { 'Content-Type': contentType || 'text/plain' };
        // Real Rekor v1 names the new entry in ETag and Location; sigstore-go (cosign v3)
        // looks the entry up in the answer by its ETag, the mock sends neither.
        if (where.endsWith(rekor.path) && statusCode === 201) {
          const uuid = Object.keys(JSON.parse(response))[0];
          headers.ETag = uuid;
          headers.Location = `${rekor.path}/${uuid}`;
        }
        res.writeHead(statusCode, headers);
        res.end(response);
      } catch (err) {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(String(err && err.message));
      }
    });
  });

  const tsaCerts = [tsa.intCertificate, tsa.rootCertificate]
    .filter(Boolean)
    .map((cert) => ({ rawBytes: cert.toString('base64') }));
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [
      {
        baseUrl: url,
        hashAlgorithm: 'SHA2_256',
        publicKey: {
          rawBytes: keyDer(tlogKeys.publicKey).toString('base64'),
          keyDetails: 'PKIX_ECDSA_P256_SHA_256',
          validFor: timeRange(started),
        },
        logId: { keyId: sha256(keyDer(tlogKeys.publicKey)).toString('base64') },
      },
    ],
    certificateAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
        uri: url,
        certChain: { certificates: [{ rawBytes: ca.rootCertificate.toString('base64') }] },
        validFor: timeRange(started),
      },
    ],
    ctlogs: [
      {
        baseUrl: url,
        hashAlgorithm: 'SHA2_256',
        publicKey: {
          rawBytes: keyDer(ctKeys.publicKey).toString('base64'),
          keyDetails: 'PKIX_ECDSA_P256_SHA_256',
          validFor: timeRange(started),
        },
        logId: { keyId: sha256(keyDer(ctKeys.publicKey)).toString('base64') },
      },
    ],
    timestampAuthorities: tsaCerts.length
      ? [
          {
            subject: { organization: 'sigstore.mock', commonName: 'tsa' },
            uri: url,
            certChain: { certificates: tsaCerts },
            validFor: timeRange(started),
          },
        ]
      : [],
  };
  const service = (kind) => ({
    url,
    majorApiVersion: 1,
    validFor: timeRange(started),
    operator: `sigstore.mock ${kind}`,
  });
  const signingConfig = {
    mediaType: 'application/vnd.dev.sigstore.signingconfig.v0.2+json',
    caUrls: [service('fulcio')],
    oidcUrls: [],
    rekorTlogUrls: [service('rekor')],
    rekorTlogConfig: { selector: 'ANY' },
    // The mock TSA speaks JSON, not RFC 3161 over DER: sigstore clients cannot use it.
    tsaUrls: [],
    tsaConfig: { selector: 'ANY' },
  };
  const trustConfig = {
    mediaType: 'application/vnd.dev.sigstore.clienttrustconfig.v0.1+json',
    trustedRoot,
    signingConfig,
  };
  fs.mkdirSync(args.out, { recursive: true });
  const files = {
    trustedRoot: path.join(args.out, 'trusted_root.json'),
    signingConfig: path.join(args.out, 'signing_config.json'),
    trustConfig: path.join(args.out, 'trust_config.json'),
  };
  fs.writeFileSync(files.trustedRoot, JSON.stringify(trustedRoot, null, 2));
  fs.writeFileSync(files.signingConfig, JSON.stringify(signingConfig, null, 2));
  fs.writeFileSync(files.trustConfig, JSON.stringify(trustConfig, null, 2));
  process.stdout.write(JSON.stringify({ url, ...files }) + '\n');

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
}

main().catch((err) => {
  process.stderr.write(`sigstore-mock-server: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
