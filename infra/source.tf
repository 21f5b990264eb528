# The functions' source: the archive `make package` builds, uploaded under its MD5 so
# that a change to the code is a new object, and so a new build of every function.

resource "google_storage_bucket" "source" {
  # checkov:skip=CKV_GCP_62:The bucket holds only the functions' source archives, written by the deployment and read by the function builds; Cloud Audit Logs record that access, and a second bucket of usage logs would add nothing.
  project                     = var.project_id
  name                        = "${var.project_id}-crmsync-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Old archives are only history once their build is done.
  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 3
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket_object" "source" {
  bucket = google_storage_bucket.source.name
  name   = "crmsync-functions-${filemd5(var.source_archive)}.zip"
  source = var.source_archive
}
