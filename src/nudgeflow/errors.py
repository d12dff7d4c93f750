"""The one error tree: a root for everything Nudgeflow raises, and one class per layer.

Each exception class stays in the module that raises it and keeps its name; its parent is
its layer's class here. A class that was a ValueError or RuntimeError still is one (it has
both parents), so every `except ValueError` written before goes on catching what it caught.

    NudgeflowError
    ├── ModelError            model/       the shapes: messages, documents, settings
    │   ├── InvalidEvent (ValueError), InvalidPayload        model/events.py
    │   ├── DocumentError (ValueError)                       model/journey_checks.py
    │   ├── AliasBudgetError (yaml.YAMLError)                model/yaml_limits.py
    │   ├── SettingError (ValueError)                        model/workspace_keys.py
    │   └── PartitionCountError (ValueError)                 model/partitions.py
    ├── StoreError            store/       storage
    │   ├── CatalogError, RowError (ValueError)              store/catalog.py
    │   ├── DatabaseError (RuntimeError)                     store/database.py
    │   ├── EngineLocked (RuntimeError)                      store/engine_lock.py
    │   ├── WriterStopped, WriterFailed (RuntimeError)       store/group_commit.py
    │   ├── IdentityProblem (ValueError)                     store/identity_settings.py
    │   ├── IdentityConflict (RuntimeError)                  store/ingest_writer.py
    │   ├── LeaseLost (RuntimeError), LeaseArgumentError (ValueError)   store/partition_leases.py
    │   ├── JourneyError (ValueError)                        store/journeys.py
    │   │   └── JourneyNotFound, InvalidTransition, InvalidDefinition, DraftConflict
    │   ├── PushTargetError (ValueError)                     store/push_targets.py
    │   ├── SecretKeyError (RuntimeError)                    store/secret_box.py
    │   ├── SegmentError (ValueError)                        store/segments.py
    │   │   └── SegmentNotFound, SegmentRefused, InvalidSegment, DraftConflict
    │   ├── TemplateStoreError (ValueError)                  store/templates.py
    │   │   └── TemplateNotFound; TemplateFileError (also a ContentError)  content/compiled_templates.py
    │   ├── VapidError (ValueError)                          store/vapid.py
    │   └── KeyProblem (ValueError)                          store/workspaces.py
    ├── ContentError          content/     rendering
    │   ├── ReportError (ValueError)                         content/bounce_parse.py
    │   ├── RenderError                                      content/errors.py
    │   ├── TemplateNotLoaded                                content/email_jobs.py
    │   ├── InvalidToken (ValueError)                        content/links.py
    │   ├── TemplateError (ValueError)                       content/templates.py
    │   └── RenderLimitError (also liquid's ResourceLimitError)    content/templates.py
    │       └── _ValueTooLarge (also liquid's FilterArgumentError)
    ├── DeliveryError         channels/    delivering
    │   ├── ChannelError                                     channels/base.py
    │   │   ├── TransientError
    │   │   └── PermanentError
    │   │       ├── BounceError                              channels/email/pool.py
    │   │       ├── ChannelProblem                           channels/base.py
    │   │       ├── TargetGone                               channels/common.py
    │   │       ├── PushOptedOut                             channels/base.py
    │   │       └── PayloadTooLarge                          channels/push_limits.py
    │   ├── NeedsEmailPackage                                channels/email/mime.py
    │   ├── PushConfigError (ValueError)                     channels/push_config.py
    │   └── SmtpConfigError (ValueError; also a ModelError)  model/smtp_config.py
    ├── EngineRuntimeError    runtime/     the loops, replay and simulation, dev servers
    │   ├── JourneyLoadError (ValueError)                    runtime/replay.py
    │   ├── InvalidMessage (ValueError)                      runtime/simulation.py
    │   ├── LeaseSettingsError (ValueError)                  runtime/leases.py
    │   └── _Refused, _ScriptedAnswer                        runtime/dev_push.py
    ├── IntakeError           ingest/      taking events in
    │   ├── IngestError (a 4xx refusal)                      ingest/errors.py
    │   └── UnknownWriteKey, ImportFailed (ValueError)       ingest/importer.py
    ├── WebError              web/         the HTTP API
    │   ├── Reject                                           web/bounces.py
    │   ├── ServerStartError (RuntimeError)                  web/embedded.py
    │   ├── Refused                                          web/definitions.py
    │   └── BadQuery (ValueError)                            web/reports_api.py (a report's dates or breakdown)
    ├── MeasureError (ValueError)                            measure/errors.py (the layer's one class)
    ├── StreamError           stream/      the event log on NATS JetStream     stream/errors.py
    │   ├── StreamSettingError, InvalidStreamRequest (ValueError)
    │   ├── StreamRefused (an existing stream weaker than asked)
    │   └── StreamUnavailable (no answer in time, no responders, no leader)
    ├── ConfigError (ValueError)                             settings.py (the layer's one class)
    └── DemoError (RuntimeError)                             demo/run.py (the demo's one class)

Nothing here is raised itself: raise the specific class, catch a layer or the root.
"""

from __future__ import annotations


class NudgeflowError(Exception):
    """Everything Nudgeflow raises on purpose."""


class ModelError(NudgeflowError):
    """A message, document or setting that does not fit its shape."""


class StoreError(NudgeflowError):
    """Storage could not do what was asked (a missing row, a conflict, a closed writer)."""


class ContentError(NudgeflowError):
    """A message's content could not be rendered or read."""


class DeliveryError(NudgeflowError):
    """A channel could not deliver, or is not set up to."""


class EngineRuntimeError(NudgeflowError):
    """The runtime around the engine (loops, replay, simulation, dev servers) refused or failed."""


class IntakeError(NudgeflowError):
    """Events could not be taken in (ingest's API and the bulk importer)."""


class WebError(NudgeflowError):
    """The HTTP API refused a request in a way of its own."""
