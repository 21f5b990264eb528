# Firestore (Native mode) and what crmsync's queries need of it. The three maps below
# mirror crmsync.store.firestore (INDEXES, TTL_FIELDS, UNINDEXED_FIELDS); the infra
# consistency test fails when the two drift apart.
locals {
  # Composite indexes, one per query that filters and orders on several fields.
  firestore_indexes = {
    # FirestoreBackend.due: every tenant's due connections, in (next_due, tenant, id) order.
    connections_due = {
      collection  = "connections"
      query_scope = "COLLECTION_GROUP"
      fields      = [["next_due", "ASCENDING"], ["tenant", "ASCENDING"], ["id", "ASCENDING"]]
    }
    # FirestoreBackend.expiring_channels: channels expiring before a time, by (expires, id).
    channels_expiring = {
      collection  = "channels"
      query_scope = "COLLECTION"
      fields      = [["expires", "ASCENDING"], ["id", "ASCENDING"]]
    }
    # FirestoreStore.channels_of: a connection's channels.
    channels_of_connection = {
      collection  = "channels"
      query_scope = "COLLECTION"
      fields      = [["tenant", "ASCENDING"], ["connection", "ASCENDING"]]
    }
    # FirestoreStore.linked_count: links of a kind in some states.
    links_by_state = {
      collection  = "links"
      query_scope = "COLLECTION"
      fields      = [["kind", "ASCENDING"], ["state", "ASCENDING"]]
    }
    # FirestoreStore.live_connections (AUTH-6): the disconnected ones counted.
    connections_by_status = {
      collection  = "connections"
      query_scope = "COLLECTION"
      fields      = [["registered", "ASCENDING"], ["status", "ASCENDING"]]
    }
    # FirestoreStore.run_page (HIS-2): a tenant's runs, filtered by any of tenant,
    # connection, status, trigger, provider and kind, in one of ten orders (a sort other
    # than `started` is followed by `started`, newest first). Firestore merges one index
    # per filter that ends in the page's order, so each filter needs one per order.
    runs_tenant_by_started_asc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["tenant", "ASCENDING"], ["started", "ASCENDING"]] }
    runs_tenant_by_started_desc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["tenant", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_tenant_by_ended_asc         = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["tenant", "ASCENDING"], ["ended", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_tenant_by_ended_desc        = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["tenant", "ASCENDING"], ["ended", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_tenant_by_status_asc        = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["tenant", "ASCENDING"], ["status", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_tenant_by_status_desc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["tenant", "ASCENDING"], ["status", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_tenant_by_duration_asc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["tenant", "ASCENDING"], ["duration", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_tenant_by_duration_desc     = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["tenant", "ASCENDING"], ["duration", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_tenant_by_trigger_asc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["tenant", "ASCENDING"], ["trigger", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_tenant_by_trigger_desc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["tenant", "ASCENDING"], ["trigger", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_connection_by_started_asc   = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["connection", "ASCENDING"], ["started", "ASCENDING"]] }
    runs_connection_by_started_desc  = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["connection", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_connection_by_ended_asc     = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["connection", "ASCENDING"], ["ended", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_connection_by_ended_desc    = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["connection", "ASCENDING"], ["ended", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_connection_by_status_asc    = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["connection", "ASCENDING"], ["status", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_connection_by_status_desc   = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["connection", "ASCENDING"], ["status", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_connection_by_duration_asc  = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["connection", "ASCENDING"], ["duration", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_connection_by_duration_desc = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["connection", "ASCENDING"], ["duration", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_connection_by_trigger_asc   = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["connection", "ASCENDING"], ["trigger", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_connection_by_trigger_desc  = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["connection", "ASCENDING"], ["trigger", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_result_by_started_asc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["result", "ASCENDING"], ["started", "ASCENDING"]] }
    runs_result_by_started_desc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["result", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_result_by_ended_asc         = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["result", "ASCENDING"], ["ended", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_result_by_ended_desc        = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["result", "ASCENDING"], ["ended", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_result_by_status_asc        = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["result", "ASCENDING"], ["status", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_result_by_status_desc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["result", "ASCENDING"], ["status", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_result_by_duration_asc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["result", "ASCENDING"], ["duration", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_result_by_duration_desc     = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["result", "ASCENDING"], ["duration", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_result_by_trigger_asc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["result", "ASCENDING"], ["trigger", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_result_by_trigger_desc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["result", "ASCENDING"], ["trigger", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_trigger_by_started_asc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["trigger", "ASCENDING"], ["started", "ASCENDING"]] }
    runs_trigger_by_started_desc     = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["trigger", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_trigger_by_ended_asc        = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["trigger", "ASCENDING"], ["ended", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_trigger_by_ended_desc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["trigger", "ASCENDING"], ["ended", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_trigger_by_status_asc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["trigger", "ASCENDING"], ["status", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_trigger_by_status_desc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["trigger", "ASCENDING"], ["status", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_trigger_by_duration_asc     = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["trigger", "ASCENDING"], ["duration", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_trigger_by_duration_desc    = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["trigger", "ASCENDING"], ["duration", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_trigger_by_trigger_asc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["trigger", "ASCENDING"], ["trigger", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_trigger_by_trigger_desc     = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["trigger", "ASCENDING"], ["trigger", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_provider_by_started_asc     = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["provider", "ASCENDING"], ["started", "ASCENDING"]] }
    runs_provider_by_started_desc    = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["provider", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_provider_by_ended_asc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["provider", "ASCENDING"], ["ended", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_provider_by_ended_desc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["provider", "ASCENDING"], ["ended", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_provider_by_status_asc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["provider", "ASCENDING"], ["status", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_provider_by_status_desc     = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["provider", "ASCENDING"], ["status", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_provider_by_duration_asc    = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["provider", "ASCENDING"], ["duration", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_provider_by_duration_desc   = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["provider", "ASCENDING"], ["duration", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_provider_by_trigger_asc     = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["provider", "ASCENDING"], ["trigger", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_provider_by_trigger_desc    = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["provider", "ASCENDING"], ["trigger", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_kinds_by_started_asc        = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["kinds", "CONTAINS"], ["started", "ASCENDING"]] }
    runs_kinds_by_started_desc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["kinds", "CONTAINS"], ["started", "DESCENDING"]] }
    runs_kinds_by_ended_asc          = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["kinds", "CONTAINS"], ["ended", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_kinds_by_ended_desc         = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["kinds", "CONTAINS"], ["ended", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_kinds_by_status_asc         = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["kinds", "CONTAINS"], ["status", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_kinds_by_status_desc        = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["kinds", "CONTAINS"], ["status", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_kinds_by_duration_asc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["kinds", "CONTAINS"], ["duration", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_kinds_by_duration_desc      = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["kinds", "CONTAINS"], ["duration", "DESCENDING"], ["started", "DESCENDING"]] }
    runs_kinds_by_trigger_asc        = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["kinds", "CONTAINS"], ["trigger", "ASCENDING"], ["started", "DESCENDING"]] }
    runs_kinds_by_trigger_desc       = { collection = "runs", query_scope = "COLLECTION_GROUP", fields = [["kinds", "CONTAINS"], ["trigger", "DESCENDING"], ["started", "DESCENDING"]] }
  }

  # Documents Firestore deletes (within a day) after the time in this field.
  firestore_ttl_fields = {
    oauth_states = "expires_at"
    sessions     = "expires_at"
    nonces       = "expires_at"
    runs         = "expire_at"
    items        = "expire_at"
  }

  # Fields no query filters or orders on: no single-field index, so large maps and
  # increasing timestamps cost no index writes.
  firestore_unindexed_fields = {
    links        = ["base", "pending", "saved"]
    journal      = ["entries", "at"]
    runs         = ["counts", "errors", "expire_at", "entries"]
    items        = ["entries", "changes", "label", "expire_at"]
    queue        = ["crm_values", "provider_values", "picks"]
    connections  = ["record", "grant", "cursors", "retries", "journal"]
    oauth_states = ["expires_at"]
    nonces       = ["expires_at"]
    sessions     = ["expires_at", "csrf"]
  }

  firestore_fields = merge(
    {
      for pair in flatten([
        for collection, fields in local.firestore_unindexed_fields : [
          for field in fields : { collection = collection, field = field }
        ]
      ]) : "${pair.collection}.${pair.field}" => merge(pair, { ttl = false })
    },
    {
      for collection, field in local.firestore_ttl_fields :
      "${collection}.${field}" => { collection = collection, field = field, ttl = true }
    },
  )
}

resource "google_firestore_database" "crmsync" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  # Removing the database from Terraform never deletes crmsync's data.
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.enabled]
}

resource "google_firestore_index" "crmsync" {
  for_each = local.firestore_indexes

  project     = var.project_id
  database    = google_firestore_database.crmsync.name
  collection  = each.value.collection
  query_scope = each.value.query_scope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value[0]
      order        = fields.value[1] == "CONTAINS" ? null : fields.value[1]
      array_config = fields.value[1] == "CONTAINS" ? "CONTAINS" : null
    }
  }
}

# A TTL field gets `ttl_config {}`; every field here gets an empty `index_config {}`,
# which turns its single-field indexes off.
resource "google_firestore_field" "crmsync" {
  for_each = local.firestore_fields

  project    = var.project_id
  database   = google_firestore_database.crmsync.name
  collection = each.value.collection
  field      = each.value.field

  index_config {}

  dynamic "ttl_config" {
    for_each = each.value.ttl ? [true] : []
    content {}
  }
}
