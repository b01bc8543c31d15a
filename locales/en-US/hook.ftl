# One hook's page: overview, endpoint, resources grid, filter, backfill, deliveries and events.

hook-page-title = Hook { $url }

## Overview

hook-overview-title = Overview
# The counts: the number is shown before the word, in its own element.
hook-count-delivered = { $count ->
        [one] delivered
       *[other] delivered
    }
hook-count-retrying = { $count ->
        [one] retrying
       *[other] retrying
    }
hook-count-retrying-hint = (an attempt failed; the next is scheduled)
hook-count-failed = { $count ->
        [one] failed
       *[other] failed
    }
hook-count-failed-hint = (no attempt left)
hook-count-pending = { $count ->
        [one] pending
       *[other] pending
    }
hook-count-discarded = { $count ->
        [one] discarded
       *[other] discarded
    }
hook-status = Status
hook-badge-disabled = Disabled
hook-badge-failing = Failing
hook-badge-enabled = Enabled
hook-failing = { $count ->
        [one] { $count } failed attempt in a row
       *[other] { $count } failed attempts in a row
    }
# $since is a date and time in UTC.
hook-failing-since = { $count ->
        [one] { $count } failed attempt in a row, since { $since }
       *[other] { $count } failed attempts in a row, since { $since }
    }
hook-endpoint = Endpoint
hook-rate-limit = Rate limit
hook-rate-limit-value = { $count ->
        [one] { $count } delivery per second
       *[other] { $count } deliveries per second
    }
# $age is a duration such as "2.5 s".
hook-rate-limit-waiting = { $count ->
        [one] { $count } waiting its turn, for { $age }
       *[other] { $count } waiting their turn, the oldest for { $age }
    }
hook-scope = Scope
hook-authorization-header = Authorization header
hook-signing-secret = Signing secret
hook-previous-secret-until = the previous one also signs until { $until }
hook-last-delivery = Last delivery
hook-last-delivery-none = none yet
hook-created = Created
hook-confirm-disable = Disable this hook? The events waiting for it are discarded, and nothing is delivered to its endpoint until it is enabled again.
hook-disable = Disable hook
hook-enable = Enable hook
hook-test-event = Event to send
hook-send-test = Send test event
hook-confirm-rotate-secret = Make a new signing secret? The current one keeps signing for 24 hours.
hook-rotate-secret = Rotate secret
hook-confirm-delete = Delete this hook? Nothing more will be delivered to its endpoint.
hook-delete = Delete hook

## Endpoint

hook-notification-endpoint = Notification endpoint
# $auth is the masked current header, e.g. "Basic ********".
hook-authorization-keep = { $auth } (leave empty to keep)
hook-authorization-placeholder = Basic c3a2… or Bearer …
hook-remove-authorization = Remove the header
hook-description = Description
hook-rate-limit-placeholder = no limit
hook-rate-limit-hint = The most deliveries per second sent to this endpoint; the others wait their turn (delayed, not failed).
hook-save-endpoint = Save endpoint

## Resources grid and named triggers

hook-grid-title = Resources
hook-grid-intro = Tick what this hook receives. Each box saves the moment it is clicked and counts from the very next change.
# Keep the <code> element and the request in it as they are.
hook-grid-noscript = The boxes save with JavaScript, which is off: use the API (<code>PUT /api/v1/hooks/{ $id }/grid/&lt;resource&gt;/&lt;action&gt;</code>).
hook-resource = Resource
hook-grid-create = Create
hook-grid-update = Update
hook-grid-delete = Delete
hook-grid-saved = Saved
# The labels of a row's boxes, for screen readers.
hook-grid-cell-create = { $resource } create
hook-grid-cell-update = { $resource } update
hook-grid-cell-delete = { $resource } delete
hook-triggers-title = Named triggers
# Followed by a link to the scripts page, in parentheses: (scripts).
hook-triggers-none = No body script defines a trigger yet
hook-triggers-none-link = scripts
hook-trigger = Trigger
hook-trigger-receive = Receive
hook-script-missing-title = its body script is gone
hook-script-missing = script missing

## Filter

hook-filter-title = Filter
# Keep the <code> elements and what they hold as they are.
hook-filter-intro = Only the events this expression returns <code>true</code> for are delivered to this hook. It sees <code>payload</code> (the body, a map), <code>event</code> (<code>"NewOpportunity"</code>, <code>"Deal.update"</code>) and <code>change</code>, and is written in the scripts' language, for example <code>payload.amount &gt;= 100000 &amp;&amp; payload.company.city == "Lyon"</code>. Empty: every event is delivered.
hook-filter-expression = Filter expression
hook-save-filter = Save filter
hook-try-filter = Try on samples
hook-filtered-out = { $count ->
        [one] { $count } event kept from this hook by its filter so far.
       *[other] { $count } events kept from this hook by its filter so far.
    }
hook-samples-title = On the samples
hook-samples-no-filter = (no filter: every one is delivered)
hook-samples-none = No sample: tick an event above, or add rows.
hook-event = Event
hook-sample-payload = Sample payload
hook-sample-result = Result
hook-sample-error = Error
hook-sample-delivered = Delivered
hook-sample-kept-out = Kept out
hook-sample-unavailable = No sample of { $event }: { $reason }

## Backfill

hook-backfill-title = Backfill
hook-backfill-intro = Send the records that already exist, as events of a trigger this hook selects: its body script renders each row the query returns, and the events are queued for this hook only, in the query's order, beside live events.
hook-backfill-needs-trigger = A backfill needs something to send: tick a named trigger, or a resource's create or update, above first.
hook-backfill-resource-hint = A resource event (such as Deal.create) sends each row as it is now, in the resource event's envelope, with old_row null.
hook-backfill-query = Rows: a query that returns their ids, in the order to send them
hook-start-backfill = Start backfill
hook-backfill-started = Started (UTC)
hook-backfill-progress = Progress
hook-action = Action
hook-backfill-failed-rows = { $count ->
        [one] ({ $count } failed to render)
       *[other] ({ $count } failed to render)
    }
hook-confirm-cancel-backfill = Cancel this backfill? No more of its rows are queued; the events it queued already stay queued.
hook-cancel-backfill = Cancel

## Deliveries

hook-deliveries-title = Deliveries
hook-only-failures = Show only failures
hook-apply = Apply
hook-deliveries-intro = Every attempt, newest first. Open one to see the request payload and what the endpoint answered.

## Events

hook-events-title = Events
hook-any = Any
hook-event-type = Event type
hook-events-filter = Filter
hook-events-none-match = No event matches these filters.
hook-events-none-yet = No event yet.
hook-resource-name = Resource name
hook-resource-id = Resource id
hook-event-status = Event status
hook-timestamp = Timestamp (UTC)
hook-attempts = Attempts
hook-badge-test = Test
hook-badge-backfill = Backfill
# $time is a date and time in UTC.
hook-next-try = next try { $time }
hook-held = Held: the filter failed
# "Retry" is the button hook-retry.
hook-held-hint = Fix the filter (it judges this event again when saved), or Retry to judge it again now.
hook-retry-event = Retry event { $id }
hook-retry = Retry
# "Retry" is the button hook-retry.
hook-confirm-discard = Discard this event? It will not be delivered to this hook (Retry sends it again later).
hook-discard-event = Discard event { $id }
hook-discard = Discard
hook-newest-events = Newest events
hook-older-events = Older events
hook-recover-title = Recover after an outage
hook-recover-intro = Deliver again every event that failed since a time, once the endpoint is back.
hook-recover-since = Failed since (UTC)
hook-recover-include-discarded = also those discarded while the hook was disabled
hook-retry-failed = Retry failed events

## The banner's copy button (a new signing secret)

hook-copy-secret = Copy the secret
hook-copy = Copy
