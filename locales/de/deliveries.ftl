# Das Lieferprotokoll und die Details einer Lieferung.

breadcrumb-hook = Hook
deliveries-title = Lieferungen
deliveries-title-failures = Lieferungen: Fehler
deliveries-test = Test
deliveries-backfill = Nachlieferung
deliveries-attempt = Versuch { $attempt }
deliveries-loading = Wird geladen…
deliveries-open = Diese Lieferung öffnen
deliveries-no-failure = Keine fehlgeschlagene Lieferung.
deliveries-none-yet = Noch keine Lieferung.
deliveries-more = Weitere Lieferungen

delivery-title = Lieferung { $id }
delivery-request = Anfrage
delivery-headers = Header
delivery-payload = Nutzlast
delivery-response = Antwort
delivery-no-answer = Keine HTTP-Antwort
delivery-body = Text
delivery-formatted = Formatiert
