# EML-2: mail attachments too large for the CRM, kept in a bucket of their own (made with
# var.attachments_bucket, used by the functions with var.mail_attachments). The functions reach it through Cloud Storage's XML API with an
# HMAC key of the crmsync-attachments account, which may use the bucket's objects and
# nothing else; the operator makes the key (docs/deploy.md), since its secret must not
# pass through Terraform's state. Objects are private; a CRM's link opens them through
# crmsync, which answers with a presigned link of a few minutes.

resource "google_service_account" "attachments" {
  count = var.attachments_bucket || var.mail_attachments ? 1 : 0

  project      = var.project_id
  account_id   = "crmsync-attachments"
  display_name = "crmsync attachments"
  description  = "Writes and signs links to the mail attachments bucket (its HMAC key)."

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "attachments" {
  # checkov:skip=CKV_GCP_62:access logs of single objects would record who opened which attachment of whose mail; the functions log each put without its content, and Cloud Audit Logs cover the bucket's administration.
  # checkov:skip=CKV_GCP_78:an attachment is written once under a key derived from its bytes and never changed; versions would only keep deleted mail beyond the lifecycle the tenant was promised.
  count = var.attachments_bucket || var.mail_attachments ? 1 : 0

  project                     = var.project_id
  name                        = "${var.project_id}-crmsync-attachments"
  location                    = var.region
  labels                      = var.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  lifecycle_rule {
    condition {
      age = var.attachment_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

# Create, read, replace and delete objects of this bucket only.
resource "google_storage_bucket_iam_member" "attachments" {
  count = var.attachments_bucket || var.mail_attachments ? 1 : 0

  bucket = google_storage_bucket.attachments[0].name
  role   = "roles/storage.objectUser"
  member = google_service_account.attachments[0].member
}
