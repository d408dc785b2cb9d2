#!/usr/bin/env node
// Verify a Sigstore bundle with sigstore-js (@sigstore/verify), an implementation
// independent of ours.  Prints one JSON line {"verified": bool, "error"?, "signer"?}
// and exits 0 when verified, 1 when not, 2 on bad usage.
//
// Usage: node verify-bundle.js --bundle FILE --trusted-root FILE
//          (--key PEM_FILE | --identity SAN --issuer URL)
//          [--artifact FILE] [--no-tlog]
// --artifact is needed for message signatures (DSSE bundles carry their payload).
// --no-tlog accepts bundles without a transparency-log entry or timestamp
// (key-based bundles signed offline).
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const { bundleFromJSON } = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

function parseArgs(argv) {
  const args = { tlog: true };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--no-tlog') {
      args.tlog = false;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    const name = { '--bundle': 'bundle', '--trusted-root': 'trustedRoot', '--key': 'key',
      '--identity': 'identity', '--issuer': 'issuer', '--artifact': 'artifact' }[flag];
    if (!name) throw new Error(`unknown argument ${flag}`);
    args[name] = value;
  }
  if (!args.bundle || !args.trustedRoot) throw new Error('--bundle and --trusted-root are required');
  if (!args.key && !(args.identity && args.issuer)) {
    throw new Error('give --key or --identity with --issuer');
  }
  return args;
}

function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`verify-bundle: ${err.message}\n`);
    return 2;
  }
  try {
    const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(args.bundle, 'utf8')));
    const root = TrustedRoot.fromJSON(JSON.parse(fs.readFileSync(args.trustedRoot, 'utf8')));
    let keys;
    if (args.key) {
      const publicKey = crypto.createPublicKey(fs.readFileSync(args.key));
      keys = () => ({ publicKey, validFor: () => true });
    }
    const material = toTrustMaterial(root, keys);
    const options = args.tlog ? {} : { tlogThreshold: 0, timestampThreshold: 0 };
    const verifier = new Verifier(material, options);
    const artifact = args.artifact ? fs.readFileSync(args.artifact) : undefined;
    const entity = toSignedEntity(bundle, artifact);
    const policy = args.key
      ? undefined
      : { subjectAlternativeName: args.identity, extensions: { issuer: args.issuer } };
    const signer = verifier.verify(entity, policy);
    const out = { verified: true, signer: signer.identity || { key: true } };
    process.stdout.write(JSON.stringify(out) + '\n');
    return 0;
  } catch (err) {
    const out = { verified: false, error: `${err.code || err.name}: ${err.message}` };
    process.stdout.write(JSON.stringify(out) + '\n');
    return 1;
  }
}

process.exitCode = main();
