# The tick: every minute Cloud Scheduler calls scheduler_fanout, which pages through
# due connections into Cloud Tasks. One job for every tenant.
resource "google_cloud_scheduler_job" "fanout" {
  project          = var.project_id
  region           = var.region
  name             = "crmsync-fanout"
  description      = "Enqueue the sync cycles of due connections (crmsync scheduler_fanout)."
  schedule         = var.fanout_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "${local.functions["scheduler_fanout"].timeout_seconds}s"

  # A missed tick is caught up by the next one a minute later.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.crmsync["scheduler_fanout"].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.caller["scheduler"].email
      audience              = google_cloudfunctions2_function.crmsync["scheduler_fanout"].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.invoker]
}
