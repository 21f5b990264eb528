locals {
  services = toset([
    # crmsync's own runtime
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "storage.googleapis.com",
    "firestore.googleapis.com",
    "cloudtasks.googleapis.com",
    "cloudscheduler.googleapis.com",
    "pubsub.googleapis.com",
    "secretmanager.googleapis.com",
    "cloudkms.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    # The Google APIs crmsync calls for its users: they must be enabled in the
    # project that owns the OAuth client, which is this one.
    "people.googleapis.com",
    "calendar-json.googleapis.com",
    "tasks.googleapis.com",
    "gmail.googleapis.com",
  ])
}

resource "google_project_service" "enabled" {
  for_each = local.services

  project = var.project_id
  service = each.value

  # Turning an API off on destroy would break whatever else the project runs.
  disable_on_destroy = false
}
