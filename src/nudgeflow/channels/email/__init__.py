"""The `email` channel: messages composed, DKIM-signed and delivered over SMTP.

- Content comes from the default renderer (`prepare_email(message) -> EmailJob`: the
  templates and personalization of content/, built here or in worker processes, see
  content/email_jobs.py and build.py), or from any `Renderer` (`render_email(message) ->
  RenderedEmail`). `compose` (mime.py) turns the rendered email into a
  multipart/alternative message: a text part (given, or derived from the HTML by
  content's `html_to_text`), the HTML part with the preheader as hidden text at its top, a
  Message-ID that is a function of the message's idempotency key (a resend after a crash
  carries the same one, so receivers and our own bounce handling can tell), a Date, and
  the headers the renderer asks for (List-Unsubscribe, List-Unsubscribe-Post, ...).
- DKIM (signing.py: relaxed/relaxed, signed by OpenSSL through `cryptography`) when the
  configuration has a key, over the headers that matter, List-Unsubscribe-Post included;
  rsa-sha256, and optionally a second, ed25519-sha256 signature (RFC 8463 dual signing).
- Delivery through a pool of SMTP connections per configuration (pool.py) (reused across messages,
  replaced when they fail), at most `concurrency` sends at once and at most `rate` a second
  (a token bucket on the injected clock).
- Outcomes: a 4xx answer, a timeout or a lost connection is a TransientError (the
  dispatcher retries with backoff); a 5xx answer to RCPT or DATA about the recipient's
  address or mailbox is a `BounceError` (a PermanentError carrying the code and text: the
  dispatcher records the message failed and appends an "Email Bounced" event); one about
  the relay, the login or the sender is a `ChannelProblem` (failed, no bounce: pool.py).

The package, in the order a message goes through it: channel.py (the channel, its
renderers and its per-workspace SMTP settings), build.py (a rendered email or a job to
the bytes as sent), mime.py (those bytes), signing.py (DKIM), pool.py (SMTP delivery).
Channel setup from the settings is channels/wiring.py's.
"""
