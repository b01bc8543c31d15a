# Die Banner, die auf ein Formular antworten, angezeigt an der Stelle, an der es abgeschickt wurde.

banner-choose-scope = wählen Sie das Unternehmen oder Projekt, zu dem der Hook gehört
banner-endpoint-created = Endpunkt gespeichert. Wählen Sie unten die Ereignisse aus, die er erhalten soll. Jede Zustellung wird mit diesem Geheimnis signiert; kopieren Sie es jetzt, es wird nicht erneut angezeigt:
banner-endpoint-not-saved = Der Endpunkt wurde nicht gespeichert: { $reason }.
banner-endpoint-saved = Endpunkt gespeichert.
banner-nothing-to-retry = Seitdem kein fehlgeschlagenes Ereignis: Es gibt nichts zu wiederholen.
banner-retried-since = { $count ->
        [one] { $count } Ereignis wird erneut zugestellt.
       *[other] { $count } Ereignisse werden erneut zugestellt.
    }
banner-nothing-retried = Nichts wurde wiederholt: { $reason }.
banner-filter-saved = Filter gespeichert: Ab jetzt werden nur die Ereignisse zugestellt, für die er true zurückgibt.
banner-filter-removed = Filter entfernt: Jedes Ereignis, das der Hook auswählt, wird zugestellt.
banner-backfill-started = Nachträglicher Versand gestartet: { $count ->
        [one] { $count } Zeile
       *[other] { $count } Zeilen
    } von { $event } im Hintergrund der Reihe nach eingereiht; der Fortschritt wird unten angezeigt.
banner-backfill-not-started = Es wurde kein nachträglicher Versand gestartet: { $reason }.
banner-backfill-cancelled = Nachträglicher Versand nach { $done } von { $count ->
        [one] { $count } Zeile
       *[other] { $count } Zeilen
    } abgebrochen; die bereits eingereihten Ereignisse bleiben in der Warteschlange.
banner-not-cancelled = Nicht abgebrochen: { $reason }.
banner-test-sent = Test-Ereignis { $event } gesendet: { $answer } in { $duration }.
banner-test-answered = Antwort: { $body }
banner-test-retried = Es wird wie jedes andere Ereignis wiederholt; siehe die Zustellungen unten.
banner-test-no-answer-yet = Test-Ereignis { $event } gesendet; der Endpunkt hat noch nicht geantwortet. Der Versuch erscheint unten bei den Zustellungen.
banner-test-not-sent = Es wurde kein Test-Ereignis gesendet: { $reason }.
banner-enabled-recover-since = Hook aktiviert: Neue Ereignisse werden wieder zugestellt. Um Verpasstes nachzuholen, wiederholen Sie die Ereignisse, die seit Beginn der Fehler fehlgeschlagen sind (unten vorausgefüllt).
banner-enabled-recover = Hook aktiviert: Neue Ereignisse werden wieder zugestellt. Um Verpasstes nachzuholen, wiederholen Sie unten seine fehlgeschlagenen Ereignisse.
banner-disabled = Hook deaktiviert: Es wird nichts mehr an ihn zugestellt, und was noch wartete, wird verworfen.
banner-secret-rotated = Neues Signaturgeheimnis. Das alte signiert 24 Stunden lang parallel weiter, damit der Empfänger wechseln kann, ohne eine Zustellung zu verlieren. Kopieren Sie es jetzt, es wird nicht erneut angezeigt:
banner-hook-deleted = Hook gelöscht. An seinen Endpunkt wird nichts mehr zugestellt.
banner-event-retried = Ereignis { $event } ist zur Zustellung eingereiht; sein Status erscheint hier nach dem Versuch.
banner-retried-leaves-filter = Es ist jetzt ausstehend und entspricht daher nicht mehr diesem Filter (Status: { $status }).
banner-not-retried = Nicht wiederholt: { $reason }.
banner-event-discarded = Ereignis { $event } wurde verworfen: Es wird nicht an diesen Hook zugestellt.
banner-discarded-leaves-filter = Es entspricht nicht mehr diesem Filter.
banner-not-discarded = Nicht verworfen: { $reason }.
