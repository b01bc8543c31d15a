# The banners that answer a form, shown where it was clicked.

banner-choose-scope = choose the company or project the hook belongs to
banner-endpoint-created = Endpoint saved. Tick the events it should receive below. Every delivery is signed with this secret; copy it now, it is not shown again:
banner-endpoint-not-saved = The endpoint was not saved: { $reason }.
banner-endpoint-saved = Endpoint saved.
banner-nothing-to-retry = No failed event since then: nothing to retry.
banner-retried-since = { $count ->
        [one] { $count } event is being delivered again.
       *[other] { $count } events are being delivered again.
    }
banner-nothing-retried = Nothing was retried: { $reason }.
banner-filter-saved = Filter saved: only the events it returns true for are delivered from now on.
banner-filter-removed = Filter removed: every event the hook selects is delivered.
banner-backfill-started = Backfill started: { $count ->
        [one] { $count } row
       *[other] { $count } rows
    } of { $event } queued in the background, in order; its progress shows below.
banner-backfill-not-started = No backfill was started: { $reason }.
banner-backfill-cancelled = Backfill cancelled after { $done } of { $count ->
        [one] { $count } row
       *[other] { $count } rows
    }; the events it queued stay queued.
banner-not-cancelled = Not cancelled: { $reason }.
banner-test-sent = Test { $event } event sent: { $answer } in { $duration }.
banner-test-answered = It answered: { $body }
banner-test-retried = It is retried like any other event; see the deliveries below.
banner-test-no-answer-yet = Test { $event } event sent; the endpoint has not answered yet. Its attempt shows in the deliveries below.
banner-test-not-sent = No test event was sent: { $reason }.
banner-enabled-recover-since = Hook enabled: new events are delivered again. To recover what it missed, retry the events that failed since it started failing (filled in below).
banner-enabled-recover = Hook enabled: new events are delivered again. To recover what it missed, retry its failed events below.
banner-disabled = Hook disabled: nothing is delivered to it, and what was waiting is discarded.
banner-secret-rotated = New signing secret. The old one keeps signing beside it for 24 hours, so the receiver can switch without losing a delivery. Copy it now, it is not shown again:
banner-hook-deleted = Hook deleted. Nothing more is delivered to its endpoint.
banner-event-retried = Event { $event } is queued for delivery; its status shows here once attempted.
banner-retried-leaves-filter = It is pending now, so it no longer matches this filter (status: { $status }).
banner-not-retried = Not retried: { $reason }.
banner-event-discarded = Event { $event } is discarded: it will not be delivered to this hook.
banner-discarded-leaves-filter = It no longer matches this filter.
banner-not-discarded = Not discarded: { $reason }.
