# Die Seite „Skripte“: der Skriptordner, die Knoten, die Trigger, die Dateien und die Ressourcenereignisse.

scripts-title = Skripte
scripts-lead = Der Ordner <code>{ $folder }</code>, geladen am { $time }.
scripts-lead-reload = herald lädt ihn neu, wenn sich eine Datei ändert; eine Datei, die sich nicht kompilieren lässt, lässt ihre vorige Version aktiv.
scripts-errors = { $count ->
        [one] { $count } Skript lässt sich nicht kompilieren.
       *[other] { $count } Skripte lassen sich nicht kompilieren.
    } Zeile und Spalte finden Sie unten.
scripts-missing-trigger = Der Trigger <strong>{ $trigger }</strong> ist in { $count ->
        [one] { $count } Hook
       *[other] { $count } Hooks
    } ausgewählt, aber keine Datei <code>GetWebhookResponseBody_{ $trigger }.rhai</code> definiert ihn mehr.

scripts-nodes = Knoten
scripts-nodes-intro = Die herald-Prozesse dieser Datenbank. Jeweils einer verarbeitet das Änderungsprotokoll: Seine Skripte entscheiden, welche Ereignisse ausgelöst werden, und erzeugen deren Inhalt.
scripts-nodes-served-by = Diese Seite wurde von <strong>{ $node }</strong> ausgeliefert.
scripts-nodes-differ = Die Knoten führen nicht dieselben Skripte aus: Vergleichen Sie unten ihre Skriptsätze. Ereignisse werden mit den Skripten des verarbeitenden Knotens erzeugt.
scripts-node = Knoten
scripts-node-state = Zustand
scripts-node-role = Rolle
scripts-node-heartbeat = Letztes Lebenszeichen
scripts-node-script-set = Skriptsatz
scripts-node-started = Gestartet
scripts-node-version = Version
scripts-node-up = aktiv
scripts-node-gone = verschwunden
scripts-node-consumer = verarbeitet das Änderungsprotokoll
scripts-node-deliverer = stellt zu und beantwortet Anfragen
scripts-node-heartbeat-ago = vor { $seconds } s

scripts-triggers = Trigger
scripts-no-trigger = Kein Body-Skript definiert einen Trigger.
scripts-status-compiles = kompiliert
scripts-status-error = Fehler
scripts-status-ok = OK
scripts-hooks = { $count ->
        [one] { $count } Hook
       *[other] { $count } Hooks
    }
scripts-version = Version
# Die Stelle eines Skriptfehlers; 0 ist eine unbekannte Zeile oder Spalte.
scripts-error-at = Zeile { $line ->
        [0] ?
       *[other] { $line }
    }, Spalte { $column ->
        [0] ?
       *[other] { $column }
    }:
scripts-sample-payload = Beispiel-Nutzlast
scripts-no-sample = Noch keine Zeile, aus der sich ein Beispiel erstellen lässt.

scripts-files = Dateien
scripts-file = Datei
scripts-file-kind = Art
scripts-file-trigger-or-table = Trigger oder Tabelle
scripts-file-status = Status
scripts-file-live-version = Aktive Version
scripts-not-a-script-name = kein Skriptname
scripts-no-live-version = keine

scripts-resource-events = Ressourcenereignisse
scripts-resource-events-intro = Jede Tabelle der Anwendung, wie das Ressourcenraster sie anbietet: ein Umschlag um die geänderte Zeile, ganz ohne Skript.
scripts-resource-event = Ereignis
scripts-resource-hooks = Hooks
scripts-resource-sample = Beispiel
scripts-show-sample = Anzeigen
scripts-no-row-yet = noch keine Zeile
scripts-kind-body = Body
scripts-kind-notification = Benachrichtigung
