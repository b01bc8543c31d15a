# The Scripts page: the scripts folder, the nodes, the triggers, the files and the resource events.

scripts-title = Scripts
scripts-lead = The folder <code>{ $folder }</code>, as loaded at { $time }.
scripts-lead-reload = herald reloads it when a file changes; a file that does not compile leaves its previous version live.
scripts-errors = { $count ->
        [one] { $count } script does not compile.
       *[other] { $count } scripts do not compile.
    } See below for the line and column.
scripts-missing-trigger = Trigger <strong>{ $trigger }</strong> is selected by { $count ->
        [one] { $count } hook
       *[other] { $count } hooks
    }, but no <code>GetWebhookResponseBody_{ $trigger }.rhai</code> defines it any more.

scripts-nodes = Nodes
scripts-nodes-intro = The herald processes of this database. One at a time consumes the change log: its scripts decide which events fire and render them.
scripts-nodes-served-by = This page was served by <strong>{ $node }</strong>.
scripts-nodes-differ = The nodes do not run the same scripts: compare their script sets below. Events are rendered by the consumer's.
scripts-node = Node
scripts-node-state = State
scripts-node-role = Role
scripts-node-heartbeat = Last heartbeat
scripts-node-script-set = Script set
scripts-node-started = Started
scripts-node-version = Version
scripts-node-up = up
scripts-node-gone = gone
scripts-node-consumer = consumes the change log
scripts-node-deliverer = delivers and serves
scripts-node-heartbeat-ago = { $seconds } s ago

scripts-triggers = Triggers
scripts-no-trigger = No body script defines a trigger.
scripts-status-compiles = compiles
scripts-status-error = error
scripts-status-ok = ok
scripts-hooks = { $count ->
        [one] { $count } hook
       *[other] { $count } hooks
    }
scripts-version = version
# A script error's place; 0 is an unknown line or column.
scripts-error-at = Line { $line ->
        [0] ?
       *[other] { $line }
    }, column { $column ->
        [0] ?
       *[other] { $column }
    }:
scripts-sample-payload = Sample payload
scripts-no-sample = No row to build a sample from yet.

scripts-files = Files
scripts-file = File
scripts-file-kind = Kind
scripts-file-trigger-or-table = Trigger or table
scripts-file-status = Status
scripts-file-live-version = Live version
scripts-not-a-script-name = not a script name
scripts-no-live-version = none

scripts-resource-events = Resource events
scripts-resource-events-intro = Every table of the application, as the resource grid offers it: an envelope around the changed row, no script involved.
scripts-resource-event = Event
scripts-resource-hooks = Hooks
scripts-resource-sample = Sample
scripts-show-sample = Show
scripts-no-row-yet = no row yet
scripts-kind-body = body
scripts-kind-notification = notification
