# Das Zustellungsprotokoll und die Details einer Zustellung.

breadcrumb-hook = Hook
deliveries-title = Zustellungen
deliveries-title-failures = Zustellungen: Fehler
deliveries-test = Test
deliveries-backfill = Backfill
deliveries-attempt = Versuch { $attempt }
deliveries-loading = Wird geladen…
deliveries-open = Diese Zustellung öffnen
deliveries-no-failure = Keine fehlgeschlagene Zustellung.
deliveries-none-yet = Noch keine Zustellung.
deliveries-more = Weitere Lieferungen

delivery-title = Zustellung { $id }
delivery-request = Anfrage
delivery-headers = Header
delivery-payload = Nutzlast
delivery-response = Antwort
delivery-no-answer = Keine HTTP-Antwort
delivery-body = Text
delivery-formatted = Formatiert
