# The queue of sync cycles (crmsync.queue.cloud_tasks): one named task per connection
# and time window, POSTed to sync_worker.
resource "google_cloud_tasks_queue" "cycles" {
  project  = var.project_id
  name     = var.queue.name
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.queue.max_dispatches_per_second
    max_concurrent_dispatches = var.queue.max_concurrent_dispatches
  }

  # A failed cycle is retried with backoff; 429 with Retry-After (a throttled
  # provider) is honoured by Cloud Tasks on top of these.
  retry_config {
    max_attempts       = var.queue.max_attempts
    min_backoff        = var.queue.min_backoff
    max_backoff        = var.queue.max_backoff
    max_doublings      = var.queue.max_doublings
    max_retry_duration = var.queue.max_retry_duration
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  # Whatever URL and token a task names, the queue delivers it to the worker's Cloud
  # Run address with an OIDC token for that address: the one audience Cloud Run checks
  # without further configuration. The worker answers on any path.
  http_target {
    http_method = "POST"

    uri_override {
      scheme                    = "HTTPS"
      host                      = trimprefix(google_cloudfunctions2_function.crmsync["sync_worker"].service_config[0].uri, "https://")
      uri_override_enforce_mode = "ALWAYS"
    }

    oidc_token {
      service_account_email = google_service_account.caller["tasks"].email
      audience              = google_cloudfunctions2_function.crmsync["sync_worker"].service_config[0].uri
    }
  }

  depends_on = [google_project_service.enabled]
}

# The functions that enqueue cycles; every task they create carries the tasks
# identity's OIDC token, so they also act as that identity.
locals {
  enqueuers = local.users_of["queue"]
}

resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = local.enqueuers

  project  = var.project_id
  location = var.region
  name     = google_cloud_tasks_queue.cycles.name
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.function[each.key].member
}

resource "google_service_account_iam_member" "enqueuer_acts_as_tasks" {
  for_each = local.enqueuers

  service_account_id = google_service_account.caller["tasks"].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.function[each.key].member
}
