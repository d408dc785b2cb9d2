"""The ops port: ``/metrics`` for Prometheus and the read-only AppSec view of decision records.

It is a separate Flask application, bound by ``attest admission serve`` to its
own port (``--web-port``) and never to the webhook port: the webhook port is
what the API server (and anything else in the cluster) can reach, so nothing
but AdmissionReview handling lives there.  The decisions view (``/decisions``)
needs a bearer token (``--web-token-file``); without one it is off.
"""

from __future__ import annotations
