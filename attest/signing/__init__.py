"""Signing and signature storage, cosign-compatible.

``keys`` (cosign key files; the one public-key type, PEM loader and verifier),
``signer`` (the :class:`~attest.signing.signer.Signer` protocol and key-based
signing), ``keyless`` (Fulcio certificates from OIDC tokens), ``authority`` (who is
trusted: key and keyless authorities, the verification policy), ``checks`` (the
checks every stored signature goes through), ``bundle`` / ``bundle_verify``
(build and parse / verify Sigstore bundles), ``legacy`` (``.sig``/``.att`` tags),
``storage`` (finding and storing signatures and attestations), ``result``
(``CheckResult``, ``SignerIdentity``), ``dsse``, ``payload``, ``fulcio``, ``tlog``,
``rekor`` and ``trust``.  In-toto Statements are :mod:`attest.attestations.statement`;
verification orchestration is :mod:`attest.verify`.
"""
