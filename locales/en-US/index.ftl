# The Webhooks page: the new-hook form, the search, and the hooks by scope.

index-lead = Each hook sends the events you choose, signed, to one notification endpoint. Company-level hooks receive the events of every project of the company; project-level hooks, those of one project.
index-new-hook = New hook
index-scope = Scope
index-scope-placeholder = company:1 or project:10
index-scope-no-tables = No <code>Company</code> or <code>Project</code> table to pick from: type <code>company:&lt;id&gt;</code> or <code>project:&lt;id&gt;</code>.
index-choose-scope = Choose a company or project…
index-company-level = Company level
index-project-level = Project level
index-company-id = company { $id }
index-project-id = project { $id }
index-endpoint = Notification endpoint
index-endpoint-hint = The URL herald POSTs each event to.
index-authorization = Authorization header
index-authorization-placeholder = Basic c3a2… or Bearer …
index-authorization-hint = Sent as it is in the <code>Authorization</code> header of every delivery.
index-description = Description
index-save-endpoint = Save endpoint
index-find-hooks = Find hooks
index-hooks-in-all = { $count ->
        [one] { $count } hook in all.
       *[other] { $count } hooks in all.
    }
index-search-text = Endpoint or description
index-search-event = Event
index-search-event-placeholder = NewOpportunity or Deal.update
index-search-status = Status
index-status-any = Any
index-search = Search
index-show-all = Show all, by scope
index-hooks-found = { $count ->
        [one] { $count } hook found
       *[other] { $count } hooks found
    }
index-no-match = No hook matches.
index-next-page = Next page
index-company-hooks = Company-level hooks
index-no-company-hook = No company-level hook yet.
index-project-hooks = Project-level hooks
index-no-project-hook = No project-level hook yet.
index-subscriptions = REST hooks subscriptions
index-subscriptions-hint = Made by outside services through <code>EPT_WebhookSubscribe</code>; they receive their trigger for every row.
index-no-subscription = No subscription.

hooks-table-endpoint = Endpoint
hooks-table-scope = Scope
hooks-table-status = Status
hooks-table-events = Events
hooks-table-created = Created (UTC)
