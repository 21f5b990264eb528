# Secret Manager holds what the functions must not carry in plain configuration: the
# key that signs onboarding links and OAuth states, crmsync's OAuth client at Google
# and, where Microsoft 365 is offered, its app registration at Microsoft. Their values
# never pass through Terraform (its state is plain text): the operator creates each
# secret with its first version (docs/deploy.md), and the apply adopts it, then sets
# who may read it.
locals {
  required_secrets = {
    "crmsync-secret"               = "Signs onboarding links and OAuth states (CRMSYNC_SECRET)."
    "crmsync-google-client-id"     = "crmsync's OAuth client ID at Google (CRMSYNC_GOOGLE_CLIENT_ID)."
    "crmsync-google-client-secret" = "crmsync's OAuth client secret at Google (CRMSYNC_GOOGLE_CLIENT_SECRET)."
  }
  # Adopted only with var.microsoft_365: a deployment without Microsoft needs neither.
  microsoft_secrets = {
    "crmsync-microsoft-client-id"     = "crmsync's application (client) ID at Microsoft (CRMSYNC_MICROSOFT_CLIENT_ID)."
    "crmsync-microsoft-client-secret" = "crmsync's client secret at Microsoft (CRMSYNC_MICROSOFT_CLIENT_SECRET)."
  }
  # Adopted only with var.mail_attachments: the HMAC secret of the attachments account.
  attachment_secrets = {
    "crmsync-attachments-secret" = "The secret of the attachments account's HMAC key (CRMSYNC_ATTACHMENTS_SECRET)."
  }
  secrets = merge(local.required_secrets, var.microsoft_365 ? local.microsoft_secrets : {}, var.mail_attachments ? local.attachment_secrets : {})
}

import {
  for_each = local.secrets
  to       = google_secret_manager_secret.crmsync[each.key]
  id       = "projects/${var.project_id}/secrets/${each.key}"
}

resource "google_secret_manager_secret" "crmsync" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = each.key
  labels    = var.labels

  annotations = {
    purpose = each.value
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

# Each function reads the secrets of its uses (local.function_secrets) that the
# deployment adopts, and only those.
resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = merge([
    for variable, secret in local.function_secrets : {
      for function in local.users_of[secret.use] :
      "${secret.secret}/${function}" => { secret = secret.secret, function = function }
    } if contains(keys(local.secrets), secret.secret)
  ]...)

  project   = var.project_id
  secret_id = google_secret_manager_secret.crmsync[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}
