"""infra/ and the code agree: a function per entry point, every variable the code reads
set on the functions, the indexes and TTLs the store's queries rely on, every topic the
code publishes to, and only the endpoints that authenticate their own callers public.

The code side is read from the code itself (its AST, crmsync's own constants), so a
change on one side without the other fails here rather than in production."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from crmsync.entrypoints import EVERYTHING, USES, from_environment
from crmsync.outbound import TYPES
from crmsync.queue.cloud_tasks import DISPATCH_DEADLINE
from crmsync.store.firestore import INDEXES, TTL_FIELDS, UNINDEXED_FIELDS
from tests.infra.terraform_config import ROOT, Terraform, block

MAIN = ROOT / "functions" / "main.py"
PACKAGE = ROOT / "shared" / "crmsync"
LOCAL_STACK = ROOT / "sandbox" / "local" / "dev.py"

# Variables the code reads only on a developer's machine: production must leave them
# unset (each would point a function at something local).
DEVELOPMENT_ONLY = {
    "CRMSYNC_LOCAL_KEK": "a local key instead of Cloud KMS",
    "CRMSYNC_KMS_ENDPOINT": "Cloud KMS at another address (the local sandbox)",
    "CRMSYNC_GOOGLE_ROOT": "Google's APIs at another root (the local sandbox)",
    "CLOUD_TASKS_EMULATOR_HOST": "the local Cloud Tasks emulator",
    "CRMSYNC_MICROSOFT_AUTHORITY": "Microsoft's identity platform elsewhere (the local sandbox)",
    "CRMSYNC_MICROSOFT_CA": "the CA that signs the local Microsoft sandbox",
    "CRMSYNC_MICROSOFT_GRAPH_ROOT": "Microsoft Graph at another root (the local sandbox)",
    "CRMSYNC_MICROSOFT_OFFICE_JS": "a stand-in for Office.js where no Outlook opens the pane",
}
# Secrets a deployment adopts only when it offers what reads them (a variable says).
OPTIONAL_SECRETS = {"microsoft_secrets": "microsoft_365", "attachment_secrets": "mail_attachments"}
# Only these authenticate their callers themselves (OAuth state, channel token, client
# state, HMAC signature, admin token) and may be invoked by anyone.
MAY_BE_PUBLIC = {
    "oauth_start",
    "oauth_callback",
    "google_webhook",
    "graph_webhook",
    "addon",  # Google's ID tokens: the add-on's service account and the user's
    "crm_events",
    "admin",
    "app",  # sessions from a verified sign-in, CSRF on every form, admin tokens
}
ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+")


# -- what the code says ---------------------------------------------------------------------
def entry_points(source: Path = MAIN) -> set[str]:
    """The module-level functions that functions-framework serves."""
    tree = ast.parse(source.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(
            isinstance(d, ast.Attribute) and d.attr in ("http", "cloud_event")
            for d in node.decorator_list
        )
    }


def environment_read(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Variable name → the modules that read it: `env["X"]`, `env.get("X")`,
    `os.environ[...]`, `os.getenv(...)`. SyncWorld (crmsync.testing) never runs in a
    function, nor does the operator's command line (crmsync.cli), whose own variables
    hold what an operator types in."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        module = path.relative_to(package.parent).with_suffix("").as_posix().replace("/", ".")
        if module.startswith("crmsync.testing") or module == "crmsync.cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            key = _environment_key(node)
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.setdefault(key.value, set()).add(module)
    return found


def _environment_key(node: ast.AST) -> ast.expr | None:
    """The key of `env[KEY]`, `env.get(KEY)` or `os.getenv(KEY)`, when it is a name."""
    key: ast.expr | None = None
    if isinstance(node, ast.Subscript) and _is_environment(node.value):
        key = node.slice
    elif isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
        reads = node.func.attr == "getenv" or (
            node.func.attr == "get" and _is_environment(node.func.value)
        )
        key = node.args[0] if reads else None
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return key if ENV_NAME.fullmatch(key.value) else None
    return None


def _is_environment(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ("env", "environ", "environment")
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def topics_published(package: Path = PACKAGE, local_stack: Path = LOCAL_STACK) -> set[str]:
    """Topics the code publishes to: names given to `topic_path(project, NAME)` in
    crmsync, and the local stack's CRM event topic (where a CRM publishes in production)."""
    names: set[str] = set()
    for path in [*sorted(package.rglob("*.py")), local_stack]:
        tree = ast.parse(path.read_text())
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr == "topic_path" and len(node.args) == 2:
                topic = node.args[1]
                if isinstance(topic, ast.Constant) and isinstance(topic.value, str):
                    names.add(topic.value)
                elif isinstance(topic, ast.Name) and topic.id in constants:
                    names.add(constants[topic.id])
    return names


def environment_provided(terraform: Terraform) -> set[str]:
    """The variables functions.tf sets on functions, plain or from Secret Manager (each
    secret only on the functions with its use), and CRMSYNC_FUNCTION, set per function."""
    provided = set(terraform.local("function_environment")) | {"CRMSYNC_FUNCTION"}
    return provided | set(terraform.local("function_secrets"))


def stub_environment(terraform: Terraform, function: str) -> dict[str, str]:
    """What Terraform gives `function`: every plain variable and the secrets of its uses,
    with stand-in values (a memory store and a local key, so nothing is called)."""
    uses = terraform.local("function_uses")[function]
    env = {name: "stand-in" for name in terraform.local("function_environment")}
    env.update(
        {
            name: "stand-in"
            for name, secret in terraform.local("function_secrets").items()
            if secret["use"] in uses
        }
    )
    env.update(
        CRMSYNC_FUNCTION=function,
        CRMSYNC_STORE="memory",
        CRMSYNC_PUBLIC_URL="https://functions.example",
        CRMSYNC_TASKS_QUEUE="projects/p/locations/l/queues/q",
        CRMSYNC_WORKER_URL="https://functions.example/sync_worker",
        CRMSYNC_EVENTS_TOPIC="projects/p/topics/sync-events",
        CRMSYNC_ATTACHMENTS_ENDPOINT="https://storage.example",
        CRMSYNC_DEBOUNCE_SECONDS="10",  # tostring(var.debounce_seconds)
        CRMSYNC_LOCAL_KEK="a2V5LWVuY3J5cHRpb24ta2V5LW9mLTMyLWJ5dGVzISE=",
    )
    env.pop("CRMSYNC_KMS_KEY")  # Cloud KMS would be called; the local key stands in
    return env


# -- functions ------------------------------------------------------------------------------
def test_every_entry_point_has_a_function_named_after_it_and_vice_versa(
    terraform: Terraform,
) -> None:
    declared = set(terraform.local("function_defaults"))
    assert declared == entry_points(), "functions.tf and functions/main.py disagree"
    function = terraform.resource("google_cloudfunctions2_function", "crmsync")
    assert function["for_each"] == "${local.functions}"
    assert function["name"] == "${each.key}", "CRMSYNC_PUBLIC_URL/<entry point> needs it"
    assert block(function, "build_config")["entry_point"] == "${each.key}"


def test_every_function_name_is_one_cloud_functions_2nd_gen_accepts() -> None:
    """Cloud Functions (2nd gen) names: a letter, then up to 62 letters, digits, hyphens
    or underscores, ending in a letter or digit. The Cloud Run service behind a function
    gets a name of its own (lowercase, hyphens), which is why the invoker bindings name
    `service_config[0].service`, never the function's name."""
    name_rule = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,61}[A-Za-z0-9]")
    assert entry_points(), "scan broken"
    assert [n for n in entry_points() if not name_rule.fullmatch(n)] == []


def test_invokers_are_bound_on_each_functions_cloud_run_service(terraform: Terraform) -> None:
    binding = terraform.resource("google_cloud_run_v2_service_iam_member", "invoker")
    assert binding["name"].endswith(".service_config[0].service}")
    assert binding["role"] == "roles/run.invoker"


def test_function_overrides_accept_exactly_the_entry_points(terraform: Terraform) -> None:
    (names_check, _) = terraform.variables["function_overrides"]["validation"]
    listed = set(re.findall(r'"(\w+)"', names_check["condition"]))
    assert listed == entry_points()


def test_every_function_runs_as_its_own_service_account(terraform: Terraform) -> None:
    account = terraform.resource("google_service_account", "function")
    assert account["for_each"] == "${local.functions}"
    function = terraform.resource("google_cloudfunctions2_function", "crmsync")
    email = block(function, "service_config")["service_account_email"]
    assert email == "${google_service_account.function[each.key].email}"


def test_the_worker_outlives_the_cloud_tasks_dispatch_deadline(terraform: Terraform) -> None:
    worker = terraform.local("function_defaults")["sync_worker"]
    assert DISPATCH_DEADLINE.total_seconds() <= worker["timeout_seconds"] <= 3600


# -- environment ----------------------------------------------------------------------------
def test_every_variable_the_code_reads_is_set_on_the_functions(terraform: Terraform) -> None:
    read = environment_read()
    assert "CRMSYNC_PUBLIC_URL" in read and "CRMSYNC_TASKS_QUEUE" in read, "scan broken"
    function = terraform.resource("google_cloudfunctions2_function", "crmsync")
    config = block(function, "service_config")
    assert "local.function_environment" in config["environment_variables"]
    assert "CRMSYNC_FUNCTION = each.key" in config["environment_variables"]
    secret_block = config["dynamic"][0]["secret_environment_variables"]
    assert "local.function_secrets" in secret_block["for_each"]
    assert "contains(local.function_uses[each.key], secret.use)" in secret_block["for_each"]
    provided = environment_provided(terraform)
    missing = {
        name: sorted(modules)
        for name, modules in read.items()
        if name not in provided and name not in DEVELOPMENT_ONLY
    }
    assert not missing, f"read by the code, not set by infra/functions.tf: {missing}"


# -- each function's uses: roles, secrets and what the code builds -------------------------
def test_each_function_is_granted_exactly_what_the_code_lets_it_use(terraform: Terraform) -> None:
    declared = {name: frozenset(uses) for name, uses in terraform.local("function_uses").items()}
    assert declared == USES
    assert set(USES) == entry_points()
    users_of = terraform.local("users_of")
    assert "local.function_uses" in users_of and "contains(uses, use)" in users_of
    assert set(re.findall(r'"(\w+)"', users_of.split(":")[0])) == EVERYTHING
    grants = {
        "vault": terraform.resource("google_kms_crypto_key_iam_member", "vault")["for_each"],
        "queue": terraform.local("enqueuers"),
        "events": terraform.resource("google_pubsub_topic_iam_member", "event_publisher")[
            "for_each"
        ],
    }
    for use, for_each in grants.items():
        assert for_each == f'${{local.users_of["{use}"]}}', use
    tasks = terraform.resource("google_cloud_tasks_queue_iam_member", "enqueuer")
    assert tasks["for_each"] == "${local.enqueuers}"
    accessors = terraform.resource("google_secret_manager_secret_iam_member", "accessor")
    assert "local.users_of[secret.use]" in accessors["for_each"]
    assert {s["use"] for s in terraform.local("function_secrets").values()} <= EVERYTHING


def test_each_function_starts_with_only_what_terraform_gives_it(terraform: Terraform) -> None:
    for function in sorted(USES):
        built = from_environment(stub_environment(terraform, function))
        assert built.public_url == "https://functions.example", function


def test_a_function_given_less_than_it_uses_does_not_start(terraform: Terraform) -> None:
    """The check above can fail: oauth_start signs links, so without CRMSYNC_SECRET it
    does not start."""
    env = stub_environment(terraform, "oauth_start")
    del env["CRMSYNC_SECRET"]
    try:
        from_environment(env)
    except KeyError as missing:
        assert "CRMSYNC_SECRET" in str(missing)
    else:
        raise AssertionError("oauth_start started without CRMSYNC_SECRET")


def test_development_only_variables_are_read_by_the_code_and_unset_in_production(
    terraform: Terraform,
) -> None:
    read = environment_read()
    assert set(DEVELOPMENT_ONLY) <= set(read), "a development-only variable is no longer read"
    provided = environment_provided(terraform)
    assert not provided & set(DEVELOPMENT_ONLY)


def test_every_secret_a_function_reads_is_a_secret_the_deployment_adopts(
    terraform: Terraform,
) -> None:
    optional = ", ".join(
        f"var.{variable} ? local.{group} : {{}}" for group, variable in OPTIONAL_SECRETS.items()
    )
    assert terraform.local("secrets") == f"${{merge(local.required_secrets, {optional})}}"
    secrets = set(terraform.local("required_secrets"))
    for group, variable in OPTIONAL_SECRETS.items():
        secrets |= set(terraform.local(group))
        assert terraform.variables[variable]["type"] == "bool", variable
        assert terraform.variables[variable]["default"] is False, "opt-in: no secret asked"
    assert {s["secret"] for s in terraform.local("function_secrets").values()} <= secrets
    (adopted,) = terraform.imports
    assert adopted["for_each"] == "${local.secrets}"
    assert adopted["to"] == "${google_secret_manager_secret.crmsync[each.key]}"
    accessors = terraform.resource("google_secret_manager_secret_iam_member", "accessor")
    assert "local.function_secrets" in accessors["for_each"]
    # a secret the deployment does not adopt is neither read by nor granted to a function
    adopted_only = "contains(keys(local.secrets), secret.secret)"
    assert adopted_only in accessors["for_each"]
    function = terraform.resource("google_cloudfunctions2_function", "crmsync")
    secret_block = block(function, "service_config")["dynamic"][0]["secret_environment_variables"]
    assert adopted_only in secret_block["for_each"]


def test_microsofts_app_registration_reaches_the_functions_that_use_the_providers(
    terraform: Terraform,
) -> None:
    secrets = terraform.local("function_secrets")
    for name in ("CRMSYNC_MICROSOFT_CLIENT_ID", "CRMSYNC_MICROSOFT_CLIENT_SECRET"):
        assert secrets[name]["use"] == secrets["CRMSYNC_GOOGLE_CLIENT_ID"]["use"] == "google"
        assert secrets[name]["secret"] in terraform.local("microsoft_secrets")
    built = from_environment(stub_environment(terraform, "sync_worker"))
    assert set(built.providers) == {"google", "microsoft"}
    assert built.providers["microsoft"].oauth.redirect_uri == (
        "https://functions.example/oauth_callback"
    )


# -- Firestore ------------------------------------------------------------------------------
def test_every_composite_index_the_store_needs_is_declared_and_no_other(
    terraform: Terraform,
) -> None:
    needed = {(i.collection_group, i.query_scope, tuple(i.fields)) for i in INDEXES}
    declared = {
        (index["collection"], index["query_scope"], tuple(tuple(f) for f in index["fields"]))
        for index in terraform.local("firestore_indexes").values()
    }
    assert declared == needed
    resource = terraform.resource("google_firestore_index", "crmsync")
    assert resource["for_each"] == "${local.firestore_indexes}"


def test_every_ttl_field_of_the_store_has_a_ttl_policy(terraform: Terraform) -> None:
    assert terraform.local("firestore_ttl_fields") == TTL_FIELDS
    field = terraform.resource("google_firestore_field", "crmsync")
    assert field["for_each"] == "${local.firestore_fields}"
    assert "local.firestore_ttl_fields" in terraform.local("firestore_fields")
    assert field["dynamic"][0]["ttl_config"]["for_each"] == "${each.value.ttl ? [true] : []}"


def test_every_field_the_store_never_queries_is_exempt_from_indexing(
    terraform: Terraform,
) -> None:
    declared = {k: set(v) for k, v in terraform.local("firestore_unindexed_fields").items()}
    assert declared == {k: set(v) for k, v in UNINDEXED_FIELDS.items()}
    assert "local.firestore_unindexed_fields" in terraform.local("firestore_fields")
    field = terraform.resource("google_firestore_field", "crmsync")
    assert field["index_config"] == [{}], "an empty index_config turns indexing off"


# -- Pub/Sub --------------------------------------------------------------------------------
def test_every_topic_the_code_publishes_to_exists(terraform: Terraform) -> None:
    published = topics_published()
    assert "crm-events" in published, "scan broken: the local stack publishes CRM events"
    assert published <= set(terraform.local("topics"))


def test_crm_events_are_pushed_to_crm_events_with_oidc_and_a_dead_letter_topic(
    terraform: Terraform,
) -> None:
    pushes = terraform.local("push_subscriptions")
    assert {"topic": "crm-events", "function": "crm_events"} in pushes.values()
    assert all(push["function"] in entry_points() for push in pushes.values())
    assert all(push["topic"] in terraform.local("topics") for push in pushes.values())
    subscription = terraform.resource("google_pubsub_subscription", "push")
    assert subscription["for_each"] == "${local.pushes}"
    push = block(subscription, "push_config")
    token = block(push, "oidc_token")
    assert push["push_endpoint"] == "${each.value.endpoint}"
    assert token["audience"] == "${each.value.audience}"
    assert token["service_account_email"].startswith(
        "${google_service_account.caller[each.value.identity]"
    )
    [internal, _] = pushes_parts(terraform)
    uri = "google_cloudfunctions2_function.crmsync[push.function].service_config[0].uri"
    assert f"endpoint = {uri}, audience = {uri}" in internal, "Cloud Run checks the audience"
    assert 'identity = "pubsub"' in internal and "local.push_subscriptions" in internal
    assert block(subscription, "dead_letter_policy")["max_delivery_attempts"] >= 5
    assert block(subscription, "dead_letter_policy")["dead_letter_topic"] == (
        "${google_pubsub_topic.dead_letter[each.key].id}"
    )
    assert terraform.local("dead_lettered") == "${toset(keys(local.pushes))}"
    assert block(subscription, "expiration_policy")["ttl"] == ""


def pushes_parts(terraform: Terraform) -> list[str]:
    """local.pushes' two halves: the pushes to crmsync's functions, then the outbound."""
    pushes = terraform.local("pushes")
    assert pushes.startswith("${merge(") and pushes.count("{for name, push in") == 2
    return pushes.split("{for name, push in")[1:]


def test_gmail_notifications_are_pushed_to_gmail_push(terraform: Terraform) -> None:
    pushes = terraform.local("push_subscriptions")
    assert {"topic": "gmail-notifications", "function": "gmail_push"} in pushes.values()
    assert "gmail_push" not in MAY_BE_PUBLIC
    assert set(terraform.local("invokers")["gmail_push"]) == {"pubsub"}
    assert '"gmail_push"' in terraform.local("internal_only")


# -- the outbound event stream (BEY-7) -----------------------------------------------------
def test_the_functions_publish_events_to_the_sync_events_topic(terraform: Terraform) -> None:
    topic = terraform.local("function_environment")["CRMSYNC_EVENTS_TOPIC"]
    assert topic == '${google_pubsub_topic.crmsync["sync-events"].id}'
    assert "sync-events" in terraform.local("topics")
    assert "CRMSYNC_EVENTS_TOPIC" in environment_read(), "the code reads it"


def test_the_functions_that_publish_events_may_publish_to_sync_events(
    terraform: Terraform,
) -> None:
    grant = terraform.resource("google_pubsub_topic_iam_member", "event_publisher")
    assert {name for name, uses in USES.items() if "events" in uses} == {
        "oauth_callback",
        "sync_worker",
        "admin",
        "app",  # a user's disconnect in the web app tells the CRM (connection events)
    }
    assert grant["role"] == "roles/pubsub.publisher"
    assert 'crmsync["sync-events"]' in grant["topic"]
    assert grant["member"] == "${google_service_account.function[each.key].member}"


def test_tenants_systems_get_the_stream_by_filtered_oidc_push_with_a_dead_letter_topic(
    terraform: Terraform,
) -> None:
    [_, outbound] = pushes_parts(terraform)
    assert outbound.startswith(" local.outbound_subscriptions")
    assert 'topic = "sync-events"' in outbound and 'identity = "events"' in outbound
    assert "endpoint = push.push_endpoint" in outbound
    assert "audience = coalesce(push.audience, push.push_endpoint)" in outbound
    assert "filter = push.filter" in outbound
    subscription = terraform.resource("google_pubsub_subscription", "push")
    assert subscription["filter"] == "${each.value.filter}"
    filters = terraform.local("outbound_subscriptions")
    assert "attributes.tenant" in filters and "attributes.type" in filters
    (*_, types_check, _) = terraform.variables["event_subscriptions"]["validation"]
    assert set(re.findall(r'"([a-z_.]+\.[a-z_]+)"', types_check["condition"])) == set(TYPES)


def test_gmail_may_publish_its_notifications(terraform: Terraform) -> None:
    grant = terraform.resource("google_pubsub_topic_iam_member", "gmail_publisher")
    assert grant["member"] == "serviceAccount:gmail-api-push@system.gserviceaccount.com"
    assert grant["role"] == "roles/pubsub.publisher"
    assert "gmail-notifications" in grant["topic"]


# -- who may call what ----------------------------------------------------------------------
def test_only_endpoints_that_authenticate_their_callers_are_public(terraform: Terraform) -> None:
    invokers = terraform.local("invokers")
    assert set(invokers) == entry_points(), "every function needs its invokers declared"
    public = {name for name, members in invokers.items() if "allUsers" in str(members)}
    assert public <= MAY_BE_PUBLIC
    assert {"scheduler_fanout", "sync_worker"}.isdisjoint(public)
    assert '"scheduler_fanout", "sync_worker"' in terraform.local("internal_only")


def test_scheduler_and_tasks_call_their_function_with_oidc_for_its_address(
    terraform: Terraform,
) -> None:
    job = block(terraform.resource("google_cloud_scheduler_job", "fanout"), "http_target")
    assert 'crmsync["scheduler_fanout"]' in job["uri"]
    assert block(job, "oidc_token")["audience"] == job["uri"]
    queue = block(terraform.resource("google_cloud_tasks_queue", "cycles"), "http_target")
    audience = block(queue, "oidc_token")["audience"]
    assert 'crmsync["sync_worker"].service_config[0].uri' in audience
    assert block(queue, "uri_override")["uri_override_enforce_mode"] == "ALWAYS"


# -- the Terraform itself -------------------------------------------------------------------
def test_every_variable_is_typed_and_described(terraform: Terraform) -> None:
    for name, variable in terraform.variables.items():
        assert variable.get("description"), f"variable {name} has no description"
        assert variable.get("type"), f"variable {name} has no type"


def test_every_output_is_described(terraform: Terraform) -> None:
    for name, output in terraform.outputs.items():
        assert output.get("description"), f"output {name} has no description"


# -- alerts ---------------------------------------------------------------------------------
def test_every_alert_points_at_a_runbook_section_of_deploy_md(terraform: Terraform) -> None:
    sections = set(re.findall(r"^### (.+)$", (ROOT / "docs" / "deploy.md").read_text(), re.M))
    runbooks = [metric["runbook"] for metric in terraform.local("log_metrics").values()]
    runbooks += [
        block(body, "documentation")["content"]
        for (kind, name), body in terraform.resources.items()
        if kind == "google_monitoring_alert_policy" and name != "log_metric"
    ]
    assert len(runbooks) >= 6, "scan broken"
    named = [re.search(r'docs/deploy\.md, \\?"([^"\\]+)\\?"', text) for text in runbooks]
    assert all(named), runbooks
    assert {m.group(1) for m in named if m} <= sections
    policy = terraform.resource("google_monitoring_alert_policy", "log_metric")
    assert policy["for_each"] == "${local.log_metrics}"
