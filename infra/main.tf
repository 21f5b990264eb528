provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = var.labels
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Every HTTP function also answers at https://REGION-PROJECT.cloudfunctions.net/NAME.
  # Each function is named after its entry point, so this base URL plus the entry point
  # is the address crmsync hands out (Services.url: webhook and OAuth callback
  # addresses, onboarding links), and it is known before any function exists.
  functions_url = "https://${var.region}-${var.project_id}.cloudfunctions.net"
  public_url    = coalesce(var.public_url, local.functions_url)

  # The queue's path and the worker's address are computed, not read from the
  # resources, so that every function (the worker too, which re-enqueues itself)
  # can carry them without a dependency cycle. The queue sends every task to the
  # worker's Cloud Run address whatever URL the task names (tasks.tf).
  queue_path = "projects/${var.project_id}/locations/${var.region}/queues/${var.queue.name}"
  worker_url = "${local.functions_url}/sync_worker"

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
