# One Cloud Function (2nd gen) per entry point of functions/main.py, all built from
# the one source archive. Each is named after its entry point (see local.public_url).
locals {
  function_defaults = {
    # Public: a user opening an onboarding link; renders a page or redirects.
    oauth_start = { memory = "512Mi", cpu = "1", concurrency = 8, min_instances = 0, max_instances = 10, timeout_seconds = 60 }
    # Public: Google's redirect after consent; exchanges the code, opens the push channel.
    oauth_callback = { memory = "512Mi", cpu = "1", concurrency = 8, min_instances = 0, max_instances = 10, timeout_seconds = 120 }
    # Public: Calendar push notifications, authenticated by the channel token. Scales to
    # zero like everything else; set min_instances = 1 in function_overrides to keep one
    # warm if cold starts delay notifications too much (bench/runtime.py measures them).
    google_webhook = { memory = "512Mi", cpu = "1", concurrency = 16, min_instances = 0, max_instances = 20, timeout_seconds = 60 }
    # Public: Microsoft Graph change and lifecycle notifications, authenticated by each
    # subscription's client state, and the validation handshake of a new subscription.
    # Graph wants the handshake answered within 10 seconds and notifications within 3,
    # and slows down or drops for an endpoint often slower: keep one instance warm
    # (min_instances = 1 in function_overrides) if cold starts take longer.
    graph_webhook = { memory = "512Mi", cpu = "1", concurrency = 16, min_instances = 0, max_instances = 20, timeout_seconds = 60 }
    # Public: the mail client's pane (CTX-1): Gmail's add-on events, authenticated by
    # Google's ID tokens (the add-on's service account, the user's token for its client).
    # A person waits for each answer: crmsync answers within 10 seconds.
    addon = { memory = "512Mi", cpu = "1", concurrency = 16, min_instances = 0, max_instances = 20, timeout_seconds = 30 }
    # Signed CRM events (HMAC checked by crmsync), direct HTTPS or Pub/Sub push.
    crm_events = { memory = "512Mi", cpu = "1", concurrency = 16, min_instances = 0, max_instances = 20, timeout_seconds = 60 }
    # Pub/Sub push only: Gmail's mailbox notifications, routed to their connections.
    gmail_push = { memory = "512Mi", cpu = "1", concurrency = 16, min_instances = 0, max_instances = 20, timeout_seconds = 60 }
    # Cloud Scheduler only: pages through due connections; one tick at a time.
    scheduler_fanout = { memory = "1Gi", cpu = "1", concurrency = 1, min_instances = 0, max_instances = 2, timeout_seconds = 540 }
    # Cloud Tasks only: one cycle per request, 20 minutes of work within the 30-minute
    # dispatch deadline, so the timeout is the full 30 minutes.
    sync_worker = { memory = "2Gi", cpu = "1", concurrency = 8, min_instances = 0, max_instances = 50, timeout_seconds = 1800 }
    # Public: tenant admins, authenticated by crmsync's own admin bearer tokens.
    admin = { memory = "512Mi", cpu = "1", concurrency = 8, min_instances = 0, max_instances = 5, timeout_seconds = 60 }
    # Public: the web app of users and tenant admins (sign-in with Google or Microsoft,
    # sessions in Firestore, CSRF on every form) and its JSON API.
    app = { memory = "512Mi", cpu = "1", concurrency = 16, min_instances = 0, max_instances = 10, timeout_seconds = 60 }
  }

  # What each function uses besides Firestore (crmsync.entrypoints.USES, which the code
  # enforces): its service account gets the roles and secrets of these uses and no
  # others. secret: CRMSYNC_SECRET; google: the OAuth clients' secrets; vault: the KMS
  # key; queue: enqueue to Cloud Tasks; events: publish to sync-events; attachments: the
  # bucket of mail attachments too large for the CRM (its HMAC key's secret).
  function_uses = {
    oauth_start      = ["secret", "google"]
    oauth_callback   = ["secret", "google", "vault", "queue", "events"]
    google_webhook   = ["queue"]
    graph_webhook    = ["queue"]
    crm_events       = ["vault", "queue"]
    addon            = ["secret", "google", "vault", "queue"]
    gmail_push       = ["queue"]
    scheduler_fanout = ["queue"]
    sync_worker      = ["secret", "google", "vault", "queue", "events", "attachments"]
    admin            = ["google", "vault", "queue", "events"]
    app              = ["secret", "google", "vault", "queue", "events", "attachments"]
  }

  # The functions with each use.
  users_of = {
    for use in ["secret", "google", "vault", "queue", "events", "attachments"] :
    use => toset([for name, uses in local.function_uses : name if contains(uses, use)])
  }

  functions = {
    for name, defaults in local.function_defaults : name => merge(
      defaults,
      { for key, value in try(var.function_overrides[name], {}) : key => value if value != null },
    )
  }

  # Who may invoke each function (keyed by a label, so that the keys are known before
  # the service accounts exist). allUsers marks the public endpoints: each of them
  # authenticates its caller itself (OAuth state, channel token, client state, HMAC
  # signature, admin token). `admin` has to be public because its callers' Authorization header carries
  # crmsync's admin token, which Cloud Run would otherwise take for a Google ID token.
  # crm_events is public while CRMs may POST signed events directly; its Pub/Sub push
  # carries an OIDC token either way. The fan-out and the worker are never public.
  invokers = {
    oauth_start    = { public = "allUsers" }
    oauth_callback = { public = "allUsers" }
    google_webhook = { public = "allUsers" }
    graph_webhook  = { public = "allUsers" }
    addon          = { public = "allUsers" }
    admin          = { public = "allUsers" }
    app            = { public = "allUsers" }
    crm_events = merge(
      { pubsub = google_service_account.caller["pubsub"].member },
      { for caller, member in { public = "allUsers" } : caller => member if var.crm_events_direct_https },
    )
    gmail_push       = { pubsub = google_service_account.caller["pubsub"].member }
    scheduler_fanout = { scheduler = google_service_account.caller["scheduler"].member }
    sync_worker      = { tasks = google_service_account.caller["tasks"].member }
  }

  # Requests from Cloud Scheduler, Cloud Tasks and Pub/Sub of this project count as
  # internal traffic, so the restricted functions refuse the internet at ingress too.
  internal_only = toset(concat(["scheduler_fanout", "sync_worker", "gmail_push"], var.crm_events_direct_https ? [] : ["crm_events"]))

  # What every function reads from its environment (crmsync.entrypoints builds what its
  # function uses; CRMSYNC_FUNCTION says which that is). Secrets come from Secret
  # Manager, each only to the functions with its use.
  function_environment = {
    CRMSYNC_STORE                 = "firestore"
    GOOGLE_CLOUD_PROJECT          = var.project_id
    CRMSYNC_HISTORY_DAYS          = tostring(var.history_days)
    CRMSYNC_DEBOUNCE_SECONDS      = tostring(var.debounce_seconds)
    CRMSYNC_PUBLIC_URL            = local.public_url
    CRMSYNC_TASKS_QUEUE           = local.queue_path
    CRMSYNC_WORKER_URL            = local.worker_url
    CRMSYNC_TASKS_SERVICE_ACCOUNT = google_service_account.caller["tasks"].email
    CRMSYNC_KMS_KEY               = google_kms_crypto_key.token_vault.id
    CRMSYNC_EVENTS_TOPIC          = google_pubsub_topic.crmsync["sync-events"].id
    CRMSYNC_GMAIL_TOPIC           = google_pubsub_topic.crmsync["gmail-notifications"].id
    # CTX-1: the Gmail add-on's deployment (none while unset): its service account and
    # OAuth client, as `gcloud workspace-add-ons get-authorization` shows them
    CRMSYNC_GOOGLE_ADDON_ACCOUNT   = var.gmail_addon_service_account
    CRMSYNC_GOOGLE_ADDON_CLIENT_ID = var.gmail_addon_client_id
    # EML-2: mail attachments too large for the CRM, in Cloud Storage through its XML
    # API with the HMAC key of the attachments account (none without var.mail_attachments)
    CRMSYNC_ATTACHMENTS_BUCKET     = var.mail_attachments ? google_storage_bucket.attachments[0].name : ""
    CRMSYNC_ATTACHMENTS_ENDPOINT   = "https://storage.googleapis.com"
    CRMSYNC_ATTACHMENTS_REGION     = "auto"
    CRMSYNC_ATTACHMENTS_ACCESS_KEY = var.attachments_access_key
  }
  # "google" is the use of the providers' OAuth clients, Microsoft's app registration
  # too (set only with var.microsoft_365, whose secrets are adopted only then).
  function_secrets = {
    CRMSYNC_SECRET                  = { secret = "crmsync-secret", use = "secret" }
    CRMSYNC_GOOGLE_CLIENT_ID        = { secret = "crmsync-google-client-id", use = "google" }
    CRMSYNC_GOOGLE_CLIENT_SECRET    = { secret = "crmsync-google-client-secret", use = "google" }
    CRMSYNC_MICROSOFT_CLIENT_ID     = { secret = "crmsync-microsoft-client-id", use = "google" }
    CRMSYNC_MICROSOFT_CLIENT_SECRET = { secret = "crmsync-microsoft-client-secret", use = "google" }
    CRMSYNC_ATTACHMENTS_SECRET      = { secret = "crmsync-attachments-secret", use = "attachments" }
  }
}

resource "google_cloudfunctions2_function" "crmsync" {
  # checkov:skip=CKV_GCP_124:oauth_start, oauth_callback, google_webhook, graph_webhook, addon, admin, app and (with direct HTTPS) crm_events are called from the internet by users, Google, Microsoft and CRMs, and authenticate each request themselves; the fan-out and the worker are ALLOW_INTERNAL_ONLY (local.internal_only).
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = each.key
  description = "crmsync ${each.key}"

  build_config {
    runtime         = var.runtime
    entry_point     = each.key
    service_account = google_service_account.caller["build"].id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = each.value.cpu
    max_instance_request_concurrency = each.value.concurrency
    min_instance_count               = each.value.min_instances
    max_instance_count               = each.value.max_instances
    timeout_seconds                  = each.value.timeout_seconds
    service_account_email            = google_service_account.function[each.key].email
    ingress_settings                 = contains(local.internal_only, each.key) ? "ALLOW_INTERNAL_ONLY" : "ALLOW_ALL"
    all_traffic_on_latest_revision   = true

    environment_variables = merge(local.function_environment, {
      CRMSYNC_FUNCTION = each.key
      # functions-framework serves THREADS requests at once; match the concurrency.
      THREADS = tostring(each.value.concurrency)
    })

    dynamic "secret_environment_variables" {
      for_each = { for name, secret in local.function_secrets : name => secret if contains(local.function_uses[each.key], secret.use) && contains(keys(local.secrets), secret.secret) }
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = google_secret_manager_secret.crmsync[secret_environment_variables.value.secret].secret_id
        version    = lookup(var.secret_versions, secret_environment_variables.value.secret, "latest")
      }
    }
  }

  lifecycle {
    precondition {
      condition     = each.key != "sync_worker" || each.value.timeout_seconds >= 1800
      error_message = "sync_worker needs a timeout of at least 1800 seconds (the Cloud Tasks dispatch deadline)."
    }
  }

  depends_on = [
    google_project_iam_member.build,
    google_project_iam_member.firestore_user,
    google_secret_manager_secret_iam_member.accessor,
    google_firestore_database.crmsync,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = merge([
    for name, members in local.invokers : {
      for caller, member in members : "${name}/${caller}" => { name = name, member = member }
    }
  ]...)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.crmsync[each.value.name].service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value.member
}
