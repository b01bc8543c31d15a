# Die Seite eines Hooks: Übersicht, Endpunkt, Ressourcenraster, Filter, nachträglicher Versand, Zustellungen und Ereignisse.

hook-page-title = Hook { $url }

## Übersicht

hook-overview-title = Übersicht
hook-count-delivered = { $count ->
        [one] zugestellt
       *[other] zugestellt
    }
hook-count-retrying = { $count ->
        [one] wird wiederholt
       *[other] werden wiederholt
    }
hook-count-retrying-hint = (ein Versuch ist fehlgeschlagen; der nächste ist geplant)
hook-count-failed = { $count ->
        [one] fehlgeschlagen
       *[other] fehlgeschlagen
    }
hook-count-failed-hint = (kein Versuch mehr übrig)
hook-count-pending = { $count ->
        [one] ausstehend
       *[other] ausstehend
    }
hook-count-discarded = { $count ->
        [one] verworfen
       *[other] verworfen
    }
hook-status = Status
hook-badge-disabled = Deaktiviert
hook-badge-failing = Fehlerhaft
hook-badge-enabled = Aktiviert
hook-failing = { $count ->
        [one] { $count } fehlgeschlagener Versuch in Folge
       *[other] { $count } fehlgeschlagene Versuche in Folge
    }
hook-failing-since = { $count ->
        [one] { $count } fehlgeschlagener Versuch in Folge, seit { $since }
       *[other] { $count } fehlgeschlagene Versuche in Folge, seit { $since }
    }
hook-endpoint = Endpunkt
hook-rate-limit = Ratenlimit
hook-rate-limit-value = { $count ->
        [one] { $count } Zustellung pro Sekunde
       *[other] { $count } Zustellungen pro Sekunde
    }
hook-rate-limit-waiting = { $count ->
        [one] { $count } Ereignis wartet, bis es an der Reihe ist, seit { $age }
       *[other] { $count } Ereignisse warten, bis sie an der Reihe sind, das älteste seit { $age }
    }
hook-scope = Geltungsbereich
hook-authorization-header = Autorisierungs-Header
hook-signing-secret = Signaturgeheimnis
hook-previous-secret-until = das vorherige signiert ebenfalls bis { $until }
hook-last-delivery = Letzte Zustellung
hook-last-delivery-none = noch keine
hook-created = Erstellt
hook-confirm-disable = Diesen Hook deaktivieren? Die Ereignisse, die auf ihn warten, werden verworfen, und an seinen Endpunkt wird nichts zugestellt, bis er wieder aktiviert wird.
hook-disable = Hook deaktivieren
hook-enable = Hook aktivieren
hook-test-event = Zu sendendes Ereignis
hook-send-test = Test-Ereignis senden
hook-confirm-rotate-secret = Ein neues Signaturgeheimnis erstellen? Das aktuelle signiert noch 24 Stunden lang weiter.
hook-rotate-secret = Geheimnis erneuern
hook-confirm-delete = Diesen Hook löschen? An seinen Endpunkt wird nichts mehr zugestellt.
hook-delete = Hook löschen

## Endpunkt

hook-notification-endpoint = Benachrichtigungsendpunkt
hook-authorization-keep = { $auth } (leer lassen, um ihn beizubehalten)
hook-authorization-placeholder = Basic c3a2… oder Bearer …
hook-remove-authorization = Header entfernen
hook-description = Beschreibung
hook-rate-limit-placeholder = kein Limit
hook-rate-limit-hint = Die höchste Anzahl Zustellungen pro Sekunde an diesen Endpunkt; die übrigen warten, bis sie an der Reihe sind (verzögert, nicht fehlgeschlagen).
hook-save-endpoint = Endpunkt speichern

## Ressourcenraster und benannte Trigger

hook-grid-title = Ressourcen
hook-grid-intro = Wählen Sie aus, was dieser Hook empfängt. Jedes Kästchen wird beim Anklicken sofort gespeichert und gilt ab der nächsten Änderung.
hook-grid-noscript = Die Kästchen speichern über JavaScript, das deaktiviert ist: Verwenden Sie die API (<code>PUT /api/v1/hooks/{ $id }/grid/&lt;resource&gt;/&lt;action&gt;</code>).
hook-resource = Ressource
hook-grid-create = Erstellen
hook-grid-update = Aktualisieren
hook-grid-delete = Löschen
hook-grid-saved = Gespeichert
hook-grid-cell-create = { $resource }: Erstellen
hook-grid-cell-update = { $resource }: Aktualisieren
hook-grid-cell-delete = { $resource }: Löschen
hook-triggers-title = Benannte Trigger
hook-triggers-none = Bisher definiert kein Body-Skript einen Trigger
hook-triggers-none-link = Skripte
hook-trigger = Trigger
hook-trigger-receive = Empfangen
hook-script-missing-title = sein Body-Skript existiert nicht mehr
hook-script-missing = Skript fehlt

## Filter

hook-filter-title = Filter
hook-filter-intro = Nur die Ereignisse, für die dieser Ausdruck <code>true</code> ergibt, werden an diesen Hook zugestellt. Er sieht <code>payload</code> (den Body, eine Map), <code>event</code> (<code>"NewOpportunity"</code>, <code>"Deal.update"</code>) und <code>change</code> und wird in der Sprache der Skripte geschrieben, zum Beispiel <code>payload.amount &gt;= 100000 &amp;&amp; payload.company.city == "Lyon"</code>. Leer: Jedes Ereignis wird zugestellt.
hook-filter-expression = Filterausdruck
hook-save-filter = Filter speichern
hook-try-filter = An Beispielen testen
hook-filtered-out = { $count ->
        [one] { $count } Ereignis wurde bisher durch seinen Filter von diesem Hook ferngehalten.
       *[other] { $count } Ereignisse wurden bisher durch seinen Filter von diesem Hook ferngehalten.
    }
hook-samples-title = An den Beispielen
hook-samples-no-filter = (kein Filter: Jedes wird zugestellt)
hook-samples-none = Kein Beispiel: Wählen Sie oben ein Ereignis aus, oder fügen Sie Zeilen hinzu.
hook-event = Ereignis
hook-sample-payload = Beispiel-Nutzlast
hook-sample-result = Ergebnis
hook-sample-error = Fehler
hook-sample-delivered = Zugestellt
hook-sample-kept-out = Ausgefiltert
hook-sample-unavailable = Kein Beispiel für { $event }: { $reason }

## Nachträglicher Versand

hook-backfill-title = Nachträglicher Versand
hook-backfill-intro = Senden Sie die bereits vorhandenen Datensätze als Ereignisse eines Triggers, den dieser Hook auswählt: Sein Body-Skript rendert jede Zeile, die die Abfrage liefert, und die Ereignisse werden nur für diesen Hook eingereiht, in der Reihenfolge der Abfrage, neben den Live-Ereignissen.
hook-backfill-needs-trigger = Ein nachträglicher Versand braucht etwas zum Senden: Wählen Sie zuerst oben einen benannten Trigger oder das Erstellen oder Aktualisieren einer Ressource aus.
hook-backfill-resource-hint = Ein Ressourcenereignis (etwa Deal.create) sendet jede Zeile so, wie sie jetzt ist, in der Hülle des Ressourcenereignisses, mit old_row null.
hook-backfill-query = Zeilen: eine Abfrage, die ihre IDs in der Reihenfolge liefert, in der sie gesendet werden sollen
hook-start-backfill = Nachträglichen Versand starten
hook-backfill-started = Gestartet (UTC)
hook-backfill-progress = Fortschritt
hook-action = Aktion
hook-backfill-failed-rows = { $count ->
        [one] ({ $count } Zeile nicht gerendert)
       *[other] ({ $count } Zeilen nicht gerendert)
    }
hook-confirm-cancel-backfill = Diesen nachträglichen Versand abbrechen? Es werden keine weiteren seiner Zeilen eingereiht; die bereits eingereihten Ereignisse bleiben in der Warteschlange.
hook-cancel-backfill = Abbrechen

## Zustellungen

hook-deliveries-title = Zustellungen
hook-only-failures = Nur Fehler anzeigen
hook-apply = Anwenden
hook-deliveries-intro = Jeder Versuch, der neueste zuerst. Öffnen Sie einen, um die Anforderungsnutzlast und die Antwort des Endpunkts zu sehen.

## Ereignisse

hook-events-title = Ereignisse
hook-any = Alle
hook-event-type = Ereignistyp
hook-events-filter = Filtern
hook-events-none-match = Kein Ereignis entspricht diesen Filtern.
hook-events-none-yet = Noch kein Ereignis.
hook-resource-name = Ressourcenname
hook-resource-id = Ressourcen-ID
hook-event-status = Ereignisstatus
hook-timestamp = Zeitstempel (UTC)
hook-attempts = Versuche
hook-badge-test = Test
hook-badge-backfill = Backfill
hook-next-try = nächster Versuch { $time }
hook-held = Zurückgehalten: Der Filter ist fehlgeschlagen
hook-held-hint = Korrigieren Sie den Filter (er beurteilt dieses Ereignis beim Speichern erneut), oder klicken Sie auf Wiederholen, um es jetzt erneut zu beurteilen.
hook-retry-event = Ereignis { $id } wiederholen
hook-retry = Wiederholen
hook-confirm-discard = Dieses Ereignis verwerfen? Es wird nicht an diesen Hook zugestellt (Wiederholen sendet es später erneut).
hook-discard-event = Ereignis { $id } verwerfen
hook-discard = Verwerfen
hook-newest-events = Neueste Ereignisse
hook-older-events = Ältere Ereignisse
hook-recover-title = Nach einem Ausfall wiederherstellen
hook-recover-intro = Stellen Sie jedes Ereignis, das seit einem Zeitpunkt fehlgeschlagen ist, erneut zu, sobald der Endpunkt wieder erreichbar ist.
hook-recover-since = Fehlgeschlagen seit (UTC)
hook-recover-include-discarded = auch die verworfenen, während der Hook deaktiviert war
hook-retry-failed = Fehlgeschlagene Ereignisse wiederholen

## Die Kopierschaltfläche des Banners (ein neues Signaturgeheimnis)

hook-copy-secret = Geheimnis kopieren
hook-copy = Kopieren
