output "public_url" {
  description = "CRMSYNC_PUBLIC_URL: the base of every address crmsync hands out."
  value       = local.public_url
}

output "oauth_redirect_uri" {
  description = "The redirect URI to register on crmsync's OAuth client at Google (and, with microsoft_365, on its app registration at Microsoft)."
  value       = "${local.public_url}/oauth_callback"
}

output "function_urls" {
  description = "Each function's public address (base URL plus entry point)."
  value       = { for name in keys(local.functions) : name => "${local.public_url}/${name}" }
}

output "function_service_uris" {
  description = "Each function's Cloud Run address: the audience of the OIDC tokens sent to it."
  value       = { for name, function in google_cloudfunctions2_function.crmsync : name => function.service_config[0].uri }
}

output "service_accounts" {
  description = "The identity of each function and caller."
  value = merge(
    { for name, account in google_service_account.function : name => account.email },
    { for name, account in google_service_account.caller : "caller_${name}" => account.email },
  )
}

output "tasks_queue" {
  description = "CRMSYNC_TASKS_QUEUE: the queue of sync cycles."
  value       = google_cloud_tasks_queue.cycles.id
}

output "kms_key" {
  description = "CRMSYNC_KMS_KEY: the token vault's key-encryption key."
  value       = google_kms_crypto_key.token_vault.id
}

output "crm_events_topic" {
  description = "The topic CRMs publish signed change events to."
  value       = google_pubsub_topic.crmsync["crm-events"].id
}

output "sync_events_topic" {
  description = "CRMSYNC_EVENTS_TOPIC: crmsync's outbound event stream, which tenants' systems subscribe to (or receive through event_subscriptions)."
  value       = google_pubsub_topic.crmsync["sync-events"].id
}

output "topics" {
  description = "Every topic crmsync receives from or offers."
  value       = { for name, topic in google_pubsub_topic.crmsync : name => topic.id }
}

output "operator_environment" {
  description = "The non-secret environment under which an operator runs crmsync's tenant tools against this deployment (docs/deploy.md)."
  value       = local.function_environment
}
