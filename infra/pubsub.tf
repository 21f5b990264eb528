# Topics crmsync receives from or offers, and the push subscriptions that deliver them
# with an OIDC token: to crmsync's own functions, and from the outbound event stream to
# tenants' systems (var.event_subscriptions). A message its endpoint keeps refusing goes
# to a dead-letter topic, where its own subscription keeps it for a week.
locals {
  topics = {
    # A tenant's CRM publishes its signed change events here (the local stack of
    # `make dev` does the same on the emulator).
    "crm-events" = "Signed change events from tenants' CRMs, pushed to crm_events."
    # Gmail publishes users.watch notifications of connected mailboxes here (Google's
    # own account publishes; see gmail_publisher), pushed on to gmail_push.
    "gmail-notifications" = "Gmail push notifications of connected mailboxes."
    # crmsync's outbound event stream (BEY-7): cycle.finished, conflict.waiting,
    # connection.* events, with tenant and type as attributes to filter on.
    "sync-events" = "crmsync's outbound event stream, for tenants' systems to subscribe to."
  }

  # Pushes to crmsync's own functions.
  push_subscriptions = {
    "crm-events-push"          = { topic = "crm-events", function = "crm_events" }
    "gmail-notifications-push" = { topic = "gmail-notifications", function = "gmail_push" }
  }

  # Pushes of the outbound stream to tenants' systems, each filtered to its tenant and
  # event types when those are given.
  outbound_subscriptions = {
    for name, subscription in var.event_subscriptions : "sync-events-${name}" => merge(subscription, {
      filter = join(" AND ", compact([
        subscription.tenant == null ? "" : "attributes.tenant = \"${subscription.tenant}\"",
        length(subscription.types) == 0 ? "" : "(${join(" OR ", [for type in subscription.types : "attributes.type = \"${type}\""])})",
      ]))
    })
  }

  # Every push subscription, to crmsync's functions (with the pubsub identity's token for
  # the function's Cloud Run address, which Cloud Run checks) and to tenants' systems
  # (with the events identity's token for their endpoint, or the audience they ask for).
  pushes = merge(
    {
      for name, push in local.push_subscriptions : name => {
        topic    = push.topic
        endpoint = google_cloudfunctions2_function.crmsync[push.function].service_config[0].uri
        audience = google_cloudfunctions2_function.crmsync[push.function].service_config[0].uri
        identity = "pubsub"
        filter   = null
      }
    },
    {
      for name, push in local.outbound_subscriptions : name => {
        topic    = "sync-events"
        endpoint = push.push_endpoint
        audience = coalesce(push.audience, push.push_endpoint)
        identity = "events"
        filter   = push.filter == "" ? null : push.filter
      }
    },
  )

  dead_lettered = toset(keys(local.pushes))
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
  for_each = local.dead_lettered

  project = var.project_id
  name    = "${each.key}-dead-letter"
  labels  = var.labels

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.dead_lettered

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
  for_each = local.pushes

  project = var.project_id
  name    = each.key
  topic   = google_pubsub_topic.crmsync[each.value.topic].id
  labels  = var.labels
  filter  = each.value.filter

  # crmsync's handlers only check and enqueue; they answer in seconds, and so must a
  # tenant's endpoint.
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = each.value.endpoint

    oidc_token {
      service_account_email = google_service_account.caller[each.value.identity].email
      audience              = each.value.audience
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
  for_each = local.dead_lettered

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.dead_lettered

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The functions that publish events, and only they.
resource "google_pubsub_topic_iam_member" "event_publisher" {
  for_each = local.users_of["events"]

  project = var.project_id
  topic   = google_pubsub_topic.crmsync["sync-events"].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.function[each.key].member
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
