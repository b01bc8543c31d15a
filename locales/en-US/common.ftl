# What every page shares: the frame, the navigation, signing in, and the error pages.

skip-to-content = Skip to content
language = Language
nav-main = Main
nav-webhooks = Webhooks
nav-scripts = Scripts
nav-api = API
nav-sign-out = Sign out
back-to-webhooks = Back to the webhooks

sign-in-title = Sign in
sign-in-hint-beside-database = Enter an admin API token of this herald: <code>{ $file }</code> beside the database, <code>HERALD_API_TOKEN</code>, or an <code>[[api_tokens]]</code> entry with the admin role.
sign-in-hint-working-directory = Enter an admin API token of this herald: <code>{ $file }</code> in herald's working directory, <code>HERALD_API_TOKEN</code>, or an <code>[[api_tokens]]</code> entry with the admin role.
sign-in-token = API token
sign-in-button = Sign in
sign-in-subscribe-token = This token may only use the REST hooks endpoints. Sign in with an admin token.
sign-in-enter-token = Enter an API token.
sign-in-invalid-token = That token is not valid.

error-refused = Refused
error-cross-site-form = This form was sent from another site.
error-signed-out = Signed out
error-signed-out-message = Your session has ended; sign in again.
error-not-found = Not found
error-no-such-file = No such file.
error-no-such-page = No such page.
error-busy = Busy
error-went-wrong = Something went wrong
error-not-possible = Not possible
error-unreadable-form = Unreadable form
error-sign-in-form-too-large = The sign-in form was too large.
error-form-not-utf8 = The form holds text that is not UTF-8; nothing was saved. Type it again, or paste it from another source.
error-form-expired = Form expired
error-form-expired-message = This form does not belong to your current session. Reload the page and try again.
error-too-many-tries = Too many tries
error-too-many-tries-message = Too many wrong tokens from this address. Try again in { $seconds ->
        [one] { $seconds } second
       *[other] { $seconds } seconds
    }.

# The pages' script.
js-saving = Saving…
js-saved = Saved
js-not-saved = Not saved:
js-deliveries-failed = Could not load the deliveries:
js-more-failed = Failed to load more deliveries; click to try again:
js-delivery-failed = Could not load this delivery:
js-copied = Copied
js-select-and-copy = Select and copy

# Words many pages use.
optional = (optional)
none = none

# An attempt's outcome, and an event's status.
outcome-success = Succeeded
outcome-http-error = HTTP error
outcome-timeout = Timed out
outcome-connection-error = Connection failed
outcome-refused = Refused target
outcome-failed = Failed
status-pending = Pending
status-delivering = Delivering
status-delivered = Delivered
status-retrying = Retrying
status-failed = Failed
status-discarded = Discarded
status-unknown = Unknown

scope-subscription-to = REST hooks subscription to { $trigger }
scope-subscription = REST hooks subscription

# A backfill's status.
backfill-status-preparing = preparing
backfill-status-running = running
backfill-status-done = done
backfill-status-failed = failed
backfill-status-cancelled = cancelled

# Why a hook is disabled.
disabled-by-administrator = disabled by an administrator
disabled-gone = the target answered 410 Gone
disabled-failing = every attempt failed since { $since } ({ $count ->
        [one] { $count } attempt
       *[other] { $count } attempts
    })
