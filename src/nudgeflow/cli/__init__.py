"""The `nudgeflow` command line: the root command and its groups, one module each.

`nudgeflow` (pyproject's [project.scripts]) and `python -m nudgeflow.cli` run `main`. Each
module holds one command group (a typer sub-app) or one root command; common.py holds what
they share, and says what a module may import at its top (start-up cost). The order commands
and groups are added here is the order `--help` lists them.
"""

from __future__ import annotations

import typer

from nudgeflow.cli.bounces import bounce_webhooks_app
from nudgeflow.cli.catalog import catalog_app
from nudgeflow.cli.consent import consent_app, suppressions_app
from nudgeflow.cli.db import db_app
from nudgeflow.cli.demo import demo
from nudgeflow.cli.experiments import experiments_app
from nudgeflow.cli.export import export
from nudgeflow.cli.identity import identity_app, keys_app
from nudgeflow.cli.import_events import import_events
from nudgeflow.cli.journeys import journeys_app
from nudgeflow.cli.mobile_push import apns_app, fcm_app
from nudgeflow.cli.policies import policies_app
from nudgeflow.cli.profiles import profiles_app
from nudgeflow.cli.report import report_app
from nudgeflow.cli.secret_key import secrets_app
from nudgeflow.cli.segments import segments_app
from nudgeflow.cli.serve import serve
from nudgeflow.cli.settings import settings_app, workspace_set
from nudgeflow.cli.simulate import simulate
from nudgeflow.cli.smtp import smtp_app
from nudgeflow.cli.status import status
from nudgeflow.cli.templates import templates_app
from nudgeflow.cli.users import users_app
from nudgeflow.cli.vapid import vapid_app
from nudgeflow.cli.webhooks import webhooks_app
from nudgeflow.cli.workspace import workspace_app

app = typer.Typer(
    help="Nudgeflow: behavior-triggered email and push messaging.", no_args_is_help=True, add_completion=False
)

app.command()(serve)
app.command("import")(import_events)
app.command()(simulate)
app.command()(demo)
app.command()(export)
app.command()(status)

app.add_typer(db_app, name="db")
app.add_typer(workspace_app, name="workspace")
app.add_typer(journeys_app, name="journeys")
app.add_typer(policies_app, name="policies")
app.add_typer(segments_app, name="segments")
app.add_typer(secrets_app, name="secrets")
app.add_typer(catalog_app, name="catalog")
app.add_typer(templates_app, name="templates")
app.add_typer(suppressions_app, name="suppressions")
app.add_typer(consent_app, name="consent")
app.add_typer(profiles_app, name="profiles")
app.add_typer(report_app, name="report")
app.add_typer(experiments_app, name="experiments")
app.add_typer(users_app, name="users")

workspace_app.command("set")(workspace_set)
workspace_app.add_typer(smtp_app, name="smtp")
workspace_app.add_typer(bounce_webhooks_app, name="bounce-webhooks")
workspace_app.add_typer(webhooks_app, name="webhooks")
workspace_app.add_typer(fcm_app, name="fcm")
workspace_app.add_typer(apns_app, name="apns")
workspace_app.add_typer(keys_app, name="keys")
workspace_app.add_typer(identity_app, name="identity")
workspace_app.add_typer(vapid_app, name="vapid")
workspace_app.add_typer(settings_app, name="settings")


def main() -> None:
    app()
