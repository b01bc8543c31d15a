# Was alle Seiten gemeinsam haben: der Rahmen, die Navigation, die Anmeldung und die Fehlerseiten.

skip-to-content = Zum Inhalt wechseln
language = Sprache
nav-main = Hauptmenü
nav-webhooks = Webhooks
nav-scripts = Skripte
nav-api = API
nav-sign-out = Abmelden
back-to-webhooks = Zurück zu den Webhooks

sign-in-title = Anmelden
sign-in-hint-beside-database = Geben Sie ein Admin-API-Token dieses herald ein: aus <code>{ $file }</code> neben der Datenbank, aus <code>HERALD_API_TOKEN</code> oder aus einem <code>[[api_tokens]]</code>-Eintrag mit der Admin-Rolle.
sign-in-hint-working-directory = Geben Sie ein Admin-API-Token dieses herald ein: aus <code>{ $file }</code> im Arbeitsverzeichnis von herald, aus <code>HERALD_API_TOKEN</code> oder aus einem <code>[[api_tokens]]</code>-Eintrag mit der Admin-Rolle.
sign-in-token = API-Token
sign-in-button = Anmelden
sign-in-subscribe-token = Dieses Token darf nur die REST-Hooks-Endpunkte verwenden. Melden Sie sich mit einem Admin-Token an.
sign-in-enter-token = Geben Sie ein API-Token ein.
sign-in-invalid-token = Dieses Token ist ungültig.

error-refused = Abgelehnt
error-cross-site-form = Dieses Formular wurde von einer anderen Website gesendet.
error-signed-out = Abgemeldet
error-signed-out-message = Ihre Sitzung ist abgelaufen; melden Sie sich erneut an.
error-not-found = Nicht gefunden
error-no-such-file = Diese Datei gibt es nicht.
error-no-such-page = Diese Seite gibt es nicht.
error-busy = Ausgelastet
error-went-wrong = Etwas ist schiefgelaufen
error-not-possible = Nicht möglich
error-unreadable-form = Unlesbares Formular
error-sign-in-form-too-large = Das Anmeldeformular war zu groß.
error-form-not-utf8 = Das Formular enthält Text, der kein UTF-8 ist; es wurde nichts gespeichert. Geben Sie ihn erneut ein oder fügen Sie ihn aus einer anderen Quelle ein.
error-form-expired = Formular abgelaufen
error-form-expired-message = Dieses Formular gehört nicht zu Ihrer aktuellen Sitzung. Laden Sie die Seite neu und versuchen Sie es erneut.
error-too-many-tries = Zu viele Versuche
error-too-many-tries-message = Zu viele falsche Tokens von dieser Adresse. Versuchen Sie es in { $seconds ->
        [one] { $seconds } Sekunde
       *[other] { $seconds } Sekunden
    } erneut.

# Das Skript der Seiten.
js-saving = Wird gespeichert…
js-saved = Gespeichert
js-not-saved = Nicht gespeichert:
js-deliveries-failed = Die Zustellungen konnten nicht geladen werden:
js-more-failed = Weitere Zustellungen konnten nicht geladen werden; klicken Sie, um es erneut zu versuchen:
js-delivery-failed = Diese Zustellung konnte nicht geladen werden:
js-copied = Kopiert
js-select-and-copy = Markieren und kopieren

# Wörter, die viele Seiten verwenden.
optional = (optional)
none = keine

# Das Ergebnis eines Versuchs und der Status eines Ereignisses.
outcome-success = Erfolgreich
outcome-http-error = HTTP-Fehler
outcome-timeout = Zeitüberschreitung
outcome-connection-error = Verbindung fehlgeschlagen
outcome-refused = Ziel abgelehnt
outcome-failed = Fehlgeschlagen
status-pending = Ausstehend
status-delivering = Wird zugestellt
status-delivered = Zugestellt
status-retrying = Wird wiederholt
status-failed = Fehlgeschlagen
status-discarded = Verworfen
status-unknown = Unbekannt

scope-subscription-to = REST-Hooks-Abonnement für { $trigger }
scope-subscription = REST-Hooks-Abonnement

# Der Status eines nachträglichen Versands.
backfill-status-preparing = wird vorbereitet
backfill-status-running = läuft
backfill-status-done = fertig
backfill-status-failed = fehlgeschlagen
backfill-status-cancelled = abgebrochen

# Warum ein Hook deaktiviert ist.
disabled-by-administrator = von einem Administrator deaktiviert
disabled-gone = der Endpunkt hat mit 410 Gone geantwortet
disabled-failing = jeder Versuch ist seit { $since } fehlgeschlagen ({ $count ->
        [one] { $count } Versuch
       *[other] { $count } Versuche
    })
