# The token vault's key-encryption key: OAuth grants, CRM tokens and event secrets are
# sealed with data keys that this key wraps (crmsync.auth.kms). It never leaves KMS.
resource "google_kms_key_ring" "crmsync" {
  project  = var.project_id
  name     = "crmsync"
  location = var.region

  depends_on = [google_project_service.enabled]
}

resource "google_kms_crypto_key" "token_vault" {
  name            = "token-vault"
  key_ring        = google_kms_key_ring.crmsync.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.kms_rotation_period
  labels          = var.labels

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = var.kms_protection_level
  }

  # Destroying the key (or a version still in use) makes every stored grant unreadable:
  # all users would have to connect again.
  lifecycle {
    prevent_destroy = true
  }
}

# Only the functions that seal or open what the vault holds: the OAuth callback seals
# a new grant, the worker and admin (disconnect) open grants, crm_events opens the
# tenant's event secret to check a signature.
resource "google_kms_crypto_key_iam_member" "vault" {
  for_each = local.users_of["vault"]

  crypto_key_id = google_kms_crypto_key.token_vault.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = google_service_account.function[each.key].member
}
