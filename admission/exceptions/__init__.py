"""Signed break-glass exceptions: documents (:mod:`.document`), the webhook's trusted
signers and exception directory (:mod:`.settings`), and how a valid exception turns a
denial into a loudly warned admission (:mod:`.apply`)."""
