variable "project_id" {
  description = "The Google Cloud project crmsync is deployed into (its ID, not its number)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id is a project ID: 6-30 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "The region of the functions, the Cloud Tasks queue, the Scheduler job and the KMS key."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region is a Google Cloud region such as us-central1 or europe-west1."
  }
}

variable "firestore_location" {
  description = "Where the Firestore database lives: a region (e.g. europe-west1) or a multi-region (nam5, eur3). It cannot change after the first apply."
  type        = string
  default     = "nam5"

  validation {
    condition     = can(regex("^([a-z]+-[a-z]+[0-9]|nam[0-9]+|eur[0-9]+)$", var.firestore_location))
    error_message = "firestore_location is a region or a Firestore multi-region (nam5, eur3, ...)."
  }
}

variable "runtime" {
  description = "The Python runtime of the functions."
  type        = string
  default     = "python312"

  validation {
    condition     = can(regex("^python3[1-9][0-9]$", var.runtime))
    error_message = "runtime is a Cloud Functions Python runtime such as python312 (crmsync needs 3.11 or newer)."
  }
}

variable "source_archive" {
  description = "The functions' source archive built by `make package`, relative to this directory."
  type        = string
  default     = "../build/crmsync-functions.zip"

  validation {
    condition     = endswith(var.source_archive, ".zip")
    error_message = "source_archive is the zip that `make package` builds."
  }
}

variable "labels" {
  description = "Labels put on every resource that takes labels."
  type        = map(string)
  default     = { app = "crmsync" }
}

variable "function_overrides" {
  description = "Per entry point, settings that replace the defaults of functions.tf (memory such as \"1Gi\", cpu, concurrency, min/max instances, timeout in seconds)."
  type = map(object({
    memory          = optional(string)
    cpu             = optional(string)
    concurrency     = optional(number)
    min_instances   = optional(number)
    max_instances   = optional(number)
    timeout_seconds = optional(number)
  }))
  default = {}

  validation {
    condition = alltrue([
      for name in keys(var.function_overrides) : contains(
        ["oauth_start", "oauth_callback", "google_webhook", "graph_webhook", "addon", "crm_events", "gmail_push", "scheduler_fanout", "sync_worker", "admin", "app"],
        name,
      )
    ])
    error_message = "function_overrides is keyed by entry point: oauth_start, oauth_callback, google_webhook, graph_webhook, addon, crm_events, gmail_push, scheduler_fanout, sync_worker, admin or app."
  }

  validation {
    # A cycle runs under a 30-minute Cloud Tasks dispatch deadline (20 minutes of work,
    # then it checkpoints and re-enqueues itself); a shorter timeout kills it mid-write.
    condition     = try(var.function_overrides["sync_worker"].timeout_seconds, null) == null || try(var.function_overrides["sync_worker"].timeout_seconds >= 1800 && var.function_overrides["sync_worker"].timeout_seconds <= 3600, false)
    error_message = "sync_worker needs a timeout of 1800 to 3600 seconds (the Cloud Tasks dispatch deadline is 30 minutes)."
  }
}

variable "queue" {
  description = "The Cloud Tasks queue of sync cycles: its name, dispatch rate and retries. Keep max_concurrent_dispatches near sync_worker's max instances times its concurrency."
  type = object({
    name                      = optional(string, "crmsync-cycles")
    max_dispatches_per_second = optional(number, 50)
    max_concurrent_dispatches = optional(number, 400)
    max_attempts              = optional(number, 10)
    min_backoff               = optional(string, "10s")
    max_backoff               = optional(string, "600s")
    max_doublings             = optional(number, 4)
    max_retry_duration        = optional(string, "86400s")
  })
  default = {}

  validation {
    condition     = var.queue.max_dispatches_per_second > 0 && var.queue.max_dispatches_per_second <= 500
    error_message = "Cloud Tasks dispatches at most 500 tasks a second per queue."
  }

  validation {
    condition     = var.queue.max_concurrent_dispatches >= 1 && var.queue.max_concurrent_dispatches <= 5000
    error_message = "Cloud Tasks allows 1 to 5000 concurrent dispatches per queue."
  }

  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,100}$", var.queue.name))
    error_message = "A queue name is 1-100 letters, digits or hyphens."
  }
}

variable "fanout_schedule" {
  description = "When Cloud Scheduler calls scheduler_fanout (unix-cron); every minute, the finest Scheduler allows."
  type        = string
  default     = "* * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.fanout_schedule))) == 5
    error_message = "fanout_schedule is a five-field unix-cron expression."
  }
}

variable "crm_events_direct_https" {
  description = "Whether CRMs may POST signed events straight to crm_events over HTTPS (it is then public; every event is still checked against the tenant's HMAC signature). False: only the crm-events Pub/Sub push subscription may call it."
  type        = bool
  default     = true
}

variable "crm_event_publishers" {
  description = "Principals allowed to publish CRM events to the crm-events topic, such as \"serviceAccount:events@crm-vendor.iam.gserviceaccount.com\"."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for member in var.crm_event_publishers : can(regex("^(serviceAccount|user|group|domain):", member))])
    error_message = "Each publisher is an IAM member: serviceAccount:, user:, group: or domain:."
  }
}

variable "event_subscriptions" {
  description = "Tenants' systems that receive crmsync's outbound events (BEY-7) by Pub/Sub push, keyed by a short name: the HTTPS endpoint, optionally one tenant's events only and only some types (cycle.finished, conflict.waiting, connection.connected, connection.needs_reauth, connection.disconnected), and the OIDC audience (default: the endpoint). Each push carries an OIDC token of the events identity (output service_accounts.caller_events)."
  type = map(object({
    push_endpoint = string
    tenant        = optional(string)
    types         = optional(list(string), [])
    audience      = optional(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for name in keys(var.event_subscriptions) : can(regex("^[a-z][a-z0-9-]{0,40}$", name))])
    error_message = "Subscription names are 1-41 lowercase letters, digits or hyphens, starting with a letter."
  }

  validation {
    condition     = alltrue([for s in values(var.event_subscriptions) : startswith(s.push_endpoint, "https://")])
    error_message = "Events are pushed over HTTPS only."
  }

  validation {
    condition = alltrue([
      for s in values(var.event_subscriptions) : alltrue([
        for type in s.types : contains(["cycle.finished", "conflict.waiting", "connection.connected", "connection.needs_reauth", "connection.disconnected"], type)
      ])
    ])
    error_message = "types are cycle.finished, conflict.waiting, connection.connected, connection.needs_reauth or connection.disconnected."
  }

  validation {
    condition     = alltrue([for s in values(var.event_subscriptions) : s.tenant == null || can(regex("^[A-Za-z0-9_-]{1,64}$", s.tenant))])
    error_message = "A tenant id is 1-64 letters, digits, '-' or '_'."
  }
}

variable "kms_rotation_period" {
  description = "How often the token-vault key gets a new primary version, in seconds with an s suffix (90 days by default). Old versions keep decrypting."
  type        = string
  default     = "7776000s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.kms_rotation_period)) && try(tonumber(trimsuffix(var.kms_rotation_period, "s")) >= 86400, false)
    error_message = "kms_rotation_period is a number of seconds with an s suffix, at least one day (86400s)."
  }
}

variable "kms_protection_level" {
  description = "SOFTWARE or HSM for the token-vault key."
  type        = string
  default     = "SOFTWARE"

  validation {
    condition     = contains(["SOFTWARE", "HSM"], var.kms_protection_level)
    error_message = "kms_protection_level is SOFTWARE or HSM."
  }
}

variable "deletion_protection" {
  description = "Protect the Firestore database from deletion (turn off only for throw-away projects)."
  type        = bool
  default     = true
}

variable "alert_email" {
  description = "An e-mail address that receives crmsync's alerts (an e-mail notification channel is created for it); null for none."
  type        = string
  default     = null

  validation {
    condition     = var.alert_email == null || can(regex("^[^@ ]+@[^@ ]+$", var.alert_email))
    error_message = "alert_email is an e-mail address or null."
  }
}

variable "notification_channels" {
  description = "Existing Cloud Monitoring notification channels (projects/P/notificationChannels/ID: PagerDuty, Slack, SMS, ...) that receive crmsync's alerts."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for channel in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", channel))])
    error_message = "Each channel is a full name: projects/PROJECT/notificationChannels/ID."
  }
}

variable "alert_thresholds" {
  description = "When the alerts fire: tasks waiting in the queue for 15 minutes, connections that need re-consent within an hour, and 5xx answers a function may give in 5 minutes."
  type = object({
    queue_backlog   = optional(number, 1000)
    needs_reauth    = optional(number, 5)
    function_errors = optional(number, 10)
  })
  default = {}
}

variable "microsoft_365" {
  description = "Whether crmsync offers Microsoft 365: the functions then read crmsync's app registration at Microsoft from the secrets crmsync-microsoft-client-id and crmsync-microsoft-client-secret, which must exist before the apply (docs/deploy.md). False: only Google is offered."
  type        = bool
  default     = false
}

variable "secret_versions" {
  description = "The version of each secret the functions read, by secret name; \"latest\" when unset. Pinning a number after adding a version rolls every function onto it (docs/deploy.md, rotating keys)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for version in values(var.secret_versions) : can(regex("^([1-9][0-9]*|latest)$", version))])
    error_message = "A secret version is a version number or \"latest\"."
  }
}

variable "history_days" {
  description = "How many days run history (runs and their record-level items) is kept before Firestore's TTL erases it."
  type        = number
  default     = 90

  validation {
    condition     = var.history_days >= 1 && floor(var.history_days) == var.history_days
    error_message = "history_days is a whole number of days, at least 1."
  }
}

variable "debounce_seconds" {
  description = "How long a change waits for the rest of its burst (a user editing several records, a bulk CRM import) before its cycle runs: one cycle then carries them all (RUN-3)."
  type        = number
  default     = 10

  validation {
    condition     = var.debounce_seconds >= 0 && var.debounce_seconds <= 300 && floor(var.debounce_seconds) == var.debounce_seconds
    error_message = "debounce_seconds is a whole number of seconds from 0 to 300."
  }
}

variable "public_url" {
  description = "CRMSYNC_PUBLIC_URL when the public functions are served under a domain of the operator's (a load balancer routing /<entry point> to each function); null for the functions' own https://REGION-PROJECT.cloudfunctions.net."
  type        = string
  default     = null

  validation {
    condition     = var.public_url == null || can(regex("^https://[^/]+(/[^/]+)*$", var.public_url))
    error_message = "public_url is an https:// base URL without a trailing slash."
  }
}

variable "attachments_bucket" {
  description = "Make the Cloud Storage bucket of mail attachments too large for the CRM and the crmsync-attachments account that may use it (the first step of mail_attachments, docs/deploy.md)."
  type        = bool
  default     = false
}

variable "mail_attachments" {
  description = "Whether mail attachments too large for the CRM are kept in the attachments bucket and linked from the CRM's history (EML-2). The functions then write it with the HMAC key of the crmsync-attachments account, whose secret must exist as crmsync-attachments-secret before the apply and whose access id is attachments_access_key (docs/deploy.md). False: such attachments are named in the item only."
  type        = bool
  default     = false
}

variable "attachments_access_key" {
  description = "The access id of the crmsync-attachments account's HMAC key (not a secret; its secret is in crmsync-attachments-secret). Used only with mail_attachments."
  type        = string
  default     = ""
}

variable "attachment_days" {
  description = "How many days a kept mail attachment stays in the bucket (and its link in the CRM works); the bucket's lifecycle deletes it after."
  type        = number
  default     = 365

  validation {
    condition     = var.attachment_days >= 1
    error_message = "attachment_days is at least 1."
  }
}

variable "gmail_addon_service_account" {
  description = "The service account of the Gmail add-on's deployment (CTX-1), which signs the ID token of every request Gmail sends: serviceAccountEmail of `gcloud workspace-add-ons get-authorization`. Empty: crmsync serves no Gmail add-on."
  type        = string
  default     = ""
}

variable "gmail_addon_client_id" {
  description = "The OAuth client of the Gmail add-on's deployment (CTX-1), the audience of the user's ID token in each event: oauthClientId of `gcloud workspace-add-ons get-authorization`."
  type        = string
  default     = ""

  validation {
    condition     = var.gmail_addon_client_id != "" || var.gmail_addon_service_account == ""
    error_message = "Set gmail_addon_client_id together with gmail_addon_service_account."
  }
}
