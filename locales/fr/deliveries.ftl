# Le registre des livraisons et le détail d’une livraison.

breadcrumb-hook = Webhook
deliveries-title = Livraisons
deliveries-title-failures = Livraisons : échecs
deliveries-test = Test
deliveries-backfill = Rattrapage
deliveries-attempt = tentative { $attempt }
deliveries-loading = Chargement…
deliveries-open = Ouvrir cette livraison
deliveries-no-failure = Aucune livraison échouée.
deliveries-none-yet = Aucune livraison pour l’instant.
deliveries-more = Plus de livraisons

delivery-title = Livraison { $id }
delivery-request = Demande
delivery-headers = En-têtes
delivery-payload = Charge utile
delivery-response = Réponse
delivery-no-answer = Aucune réponse HTTP
delivery-body = Corps
delivery-formatted = Mis en forme
