"""The reference CRM: crmsync's CRM contract implemented for real, over HTTP with SQLite.

    crm = ReferenceCrm(CrmDatabase("crm.sqlite"))
    crm.add_tenant("t1", token)
    crm.add_user("t1", "u1", name="Dana Rep", timezone="Europe/Berlin")
    base_url, stop = serve(crm)   # http://127.0.0.1:PORT/api/crmsync/v1

`python -m sandbox.crm --seed` runs it standalone with a demo tenant.
"""
