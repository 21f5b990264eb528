# One identity per function, and one per caller of the invoker-restricted functions.
# Each gets only the roles it needs, granted on the resource itself where the
# resource allows it (a secret, the key, the queue, a function), on the project only
# for Firestore, whose IAM is project-wide.

resource "google_service_account" "function" {
  for_each = local.functions

  project      = var.project_id
  account_id   = "crmsync-${replace(each.key, "_", "-")}"
  display_name = "crmsync ${each.key} function"
  description  = "Runs the ${each.key} Cloud Function of crmsync."

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "caller" {
  for_each = {
    tasks     = "Cloud Tasks: the OIDC identity of every sync task sent to sync_worker"
    scheduler = "Cloud Scheduler: the OIDC identity of the fan-out call"
    pubsub    = "Pub/Sub: the OIDC identity of pushes to crm_events and gmail_push"
    events    = "Pub/Sub: the OIDC identity of outbound event pushes to tenants' systems"
    build     = "Cloud Build: builds the functions' container images from the source archive"
  }

  project      = var.project_id
  account_id   = "crmsync-${each.key}"
  display_name = "crmsync ${each.key}"
  description  = each.value

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "firestore_user" {
  for_each = local.functions

  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.function[each.key].member
}

# The functions are built under a dedicated account (projects created since 2024 give
# Cloud Build's default account no roles): it reads the source, writes the image to
# Artifact Registry and its build log.
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer", "roles/storage.objectViewer"])

  project = var.project_id
  role    = each.value
  member  = google_service_account.caller["build"].member
}

# Pub/Sub signs the OIDC tokens of its pushes with the push identities.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  for_each = toset(["pubsub", "events"])

  service_account_id = google_service_account.caller[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent

  depends_on = [google_project_service.enabled]
}
