"""Signing and signature storage, cosign-compatible.

``keys`` (cosign key files), ``signer`` (the :class:`~attest.signing.signer.Signer`
abstraction and key-based signing), ``dsse`` (envelopes), ``payload`` (cosign's
simple-signing payload), ``legacy`` (``.sig``/``.att`` tags), ``storage`` (finding
and storing signatures and attestations), ``rekor`` (signed entry timestamps);
Sigstore bundles, trust roots and keyless signing are in ``bundle``, ``trust``
and ``keyless``.  Verification orchestration is :mod:`attest.verify`.
"""
