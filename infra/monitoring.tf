# What pages the operator: log-based metrics over crmsync's JSON logs (`message` and
# crmsync's fields land in jsonPayload) and Google's own metrics, each with an alert
# policy whose documentation points at its runbook in docs/deploy.md.

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email == null ? 0 : 1

  project      = var.project_id
  display_name = "crmsync operators"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.enabled]
}

locals {
  notification_channels = concat(google_monitoring_notification_channel.email[*].id, var.notification_channels)

  # Each log-based metric pages when its count over `period` passes `threshold`.
  log_metrics = {
    # crmsync.service._check_health: a run has been marked running for 45 minutes.
    stuck_connections = {
      description = "Connections the fan-out found with a stuck run."
      filter      = "jsonPayload.message=\"connection health\" AND jsonPayload.health=\"stuck\""
      alert       = "crmsync: stuck sync runs"
      condition   = "a connection's run is stuck"
      threshold   = 0
      period      = "300s"
      runbook     = "A sync run has held its connection's lease for 45 minutes past its expiry. Runbook: docs/deploy.md, \"Stuck runs\"."
    }
    # crmsync.connections (a refresh refused) and crmsync.service.work (a cycle ended
    # needs_reauth): the user must consent again.
    needs_reauth = {
      description = "Grants a provider refused: connections that now need the user's consent again."
      filter      = "(jsonPayload.message=\"grant refused\" OR (jsonPayload.message=\"worker finished\" AND jsonPayload.status=\"needs_reauth\"))"
      alert       = "crmsync: needs-reauth spike"
      condition   = "more grants refused than usual within an hour"
      threshold   = var.alert_thresholds.needs_reauth
      period      = "3600s"
      runbook     = "Providers refused more stored grants than usual; those connections stopped syncing until their users consent again. Runbook: docs/deploy.md, \"Needs-reauth spike\"."
    }
    # crmsync.entrypoints._guarded: a request ended in an error crmsync did not expect
    # (a defect; no input should cause one), logged with its reference and error type.
    unhandled_errors = {
      description = "Requests that ended in an error of crmsync's own (answered 500)."
      filter      = "jsonPayload.message=\"unhandled error\""
      alert       = "crmsync: unhandled errors"
      condition   = "a request ended in an unhandled error"
      threshold   = 0
      period      = "300s"
      runbook     = "A function met an error it does not handle: a defect of crmsync. Runbook: docs/deploy.md, \"Unhandled errors\"."
    }
    # crmsync.outbound.publish_all: an event the sync-events topic did not take.
    events_unpublished = {
      description = "Outbound events (BEY-7) that could not be published to sync-events."
      filter      = "jsonPayload.message=\"event not published\""
      alert       = "crmsync: outbound events not published"
      condition   = "events the sync-events topic did not take"
      threshold   = 0
      period      = "300s"
      runbook     = "crmsync could not publish events to its outbound stream; syncing goes on, but tenants' systems miss those events. Runbook: docs/deploy.md, \"Events not published\"."
    }
  }
}

resource "google_logging_metric" "crmsync" {
  for_each = local.log_metrics

  project     = var.project_id
  name        = "crmsync/${each.key}"
  description = each.value.description
  filter      = "resource.type=\"cloud_run_revision\" AND jsonPayload.logger=~\"^crmsync\" AND ${each.value.filter}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "log_metric" {
  for_each = local.log_metrics

  project               = var.project_id
  display_name          = each.value.alert
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = each.value.condition
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.crmsync[each.key].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"
      aggregations {
        alignment_period     = each.value.period
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = each.value.runbook
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

resource "google_monitoring_alert_policy" "queue_backlog" {
  project               = var.project_id
  display_name          = "crmsync: sync queue backlog"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "tasks waiting in the sync queue"
    condition_threshold {
      filter          = "resource.type=\"cloud_tasks_queue\" AND resource.labels.queue_id=\"${google_cloud_tasks_queue.cycles.name}\" AND metric.type=\"cloudtasks.googleapis.com/queue/depth\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_thresholds.queue_backlog
      duration        = "900s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MEAN"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "More sync cycles are waiting than the worker drains, for 15 minutes. Runbook: docs/deploy.md, \"Queue backlog\"."
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

resource "google_monitoring_alert_policy" "function_errors" {
  project               = var.project_id
  display_name          = "crmsync: functions answering 5xx"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "5xx answers"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"run.googleapis.com/request_count\" AND metric.labels.response_code_class=\"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_thresholds.function_errors
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A function keeps answering 5xx: a dependency is down or crmsync is failing. Runbook: docs/deploy.md, \"Functions answering 5xx\"."
  }

  alert_strategy {
    auto_close = "86400s"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "crmsync: undeliverable events"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "messages in a dead-letter subscription"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=monitoring.regex.full_match(\".*-dead-letter\") AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Pub/Sub gave up delivering some events to crmsync. Runbook: docs/deploy.md, \"Dead letters\"."
  }

  alert_strategy {
    auto_close = "86400s"
  }

  depends_on = [google_pubsub_subscription.dead_letter]
}
