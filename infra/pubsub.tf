# Topics crmsync receives from or offers, and the push subscriptions that deliver them
# to a function with an OIDC token. A message a function keeps refusing goes to a
# dead-letter topic, where its own subscription keeps it for a week.
locals {
  topics = {
    # A tenant's CRM publishes its signed change events here (the local stack of
    # `make dev` does the same on the emulator).
    "crm-events" = "Signed change events from tenants' CRMs, pushed to crm_events."
    # Gmail publishes users.watch notifications of connected mailboxes here; its push
    # subscription arrives with crmsync's Gmail notification handler.
    "gmail-notifications" = "Gmail push notifications of connected mailboxes."
    # crmsync's outbound event stream: tenants' own systems subscribe to it.
    "sync-events" = "crmsync's outbound event stream, for tenants' systems to subscribe to."
  }

  push_subscriptions = {
    "crm-events-push" = { topic = "crm-events", function = "crm_events" }
  }
}

resource "google_pubsub_topic" "crmsync" {
  # checkov:skip=CKV_GCP_83:Google encrypts messages at rest; crmsync's messages carry ids, signatures and Gmail's history pointers, never record content or tokens, and a customer key would put a KMS call on every publish and push.
  for_each = local.topics

  project                    = var.project_id
  name                       = each.key
  labels                     = var.labels
  message_retention_duration = "86400s"

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83:Holds the same messages as the topic it backs (see google_pubsub_topic.crmsync).
  for_each = local.push_subscriptions

  project = var.project_id
  name    = "${each.key}-dead-letter"
  labels  = var.labels

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.push_subscriptions

  project                    = var.project_id
  name                       = "${each.key}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  labels                     = var.labels
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = local.push_subscriptions

  project = var.project_id
  name    = each.key
  topic   = google_pubsub_topic.crmsync[each.value.topic].id
  labels  = var.labels

  # The handlers only check and enqueue; they answer in seconds.
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.crmsync[each.value.function].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.caller["pubsub"].email
      audience              = google_cloudfunctions2_function.crmsync[each.value.function].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = 10
  }

  # Never expire for want of traffic (a quiet CRM is not a dead one).
  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.invoker,
    google_service_account_iam_member.pubsub_token_creator,
  ]
}

# Pub/Sub moves undeliverable messages itself: it publishes to the dead-letter topic
# and acknowledges on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.push_subscriptions

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.push_subscriptions

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

resource "google_pubsub_topic_iam_member" "gmail_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.crmsync["gmail-notifications"].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:gmail-api-push@system.gserviceaccount.com"
}

resource "google_pubsub_topic_iam_member" "crm_event_publisher" {
  for_each = toset(var.crm_event_publishers)

  project = var.project_id
  topic   = google_pubsub_topic.crmsync["crm-events"].name
  role    = "roles/pubsub.publisher"
  member  = each.value
}
