terraform {
  # 1.7: import blocks with for_each (secrets.tf).
  required_version = ">= 1.7"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
  }

  # Partial configuration: `terraform init -backend-config=bucket=STATE_BUCKET`
  # (docs/deploy.md, cloudbuild.yaml). The state bucket is the one thing that
  # exists before the first apply.
  backend "gcs" {
    prefix = "crmsync"
  }
}
