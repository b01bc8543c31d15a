# Les bandeaux qui répondent à un formulaire, affichés là où il a été cliqué.

banner-choose-scope = choisissez l’entreprise ou le projet auquel appartient le webhook
banner-endpoint-created = Terminal enregistré. Cochez ci-dessous les événements qu’il doit recevoir. Chaque livraison est signée avec ce secret ; copiez-le maintenant, il ne sera plus affiché :
banner-endpoint-not-saved = Le terminal n’a pas été enregistré : { $reason }.
banner-endpoint-saved = Terminal enregistré.
banner-nothing-to-retry = Aucun événement en échec depuis cette date : rien à réessayer.
banner-retried-since = { $count ->
        [one] { $count } événement est de nouveau en cours de livraison.
       *[other] { $count } événements sont de nouveau en cours de livraison.
    }
banner-nothing-retried = Rien n’a été réessayé : { $reason }.
banner-filter-saved = Filtre enregistré : désormais, seuls les événements pour lesquels il renvoie true sont livrés.
banner-filter-removed = Filtre supprimé : tous les événements que le webhook sélectionne sont livrés.
banner-backfill-started = Rattrapage lancé : mise en file d’attente de { $count ->
        [one] { $count } ligne
       *[other] { $count } lignes
    } de { $event } en arrière-plan, dans l’ordre ; sa progression s’affiche ci-dessous.
banner-backfill-not-started = Aucun rattrapage n’a été lancé : { $reason }.
banner-backfill-cancelled = Rattrapage annulé après { $done } sur { $count ->
        [one] { $count } ligne
       *[other] { $count } lignes
    } ; les événements déjà mis en file d’attente y restent.
banner-not-cancelled = Non annulé : { $reason }.
banner-test-sent = Événement de test { $event } envoyé : { $answer } en { $duration }.
banner-test-answered = Il a répondu : { $body }
banner-test-retried = Il sera réessayé comme tout autre événement ; voir les livraisons ci-dessous.
banner-test-no-answer-yet = Événement de test { $event } envoyé ; le terminal n’a pas encore répondu. Sa tentative s’affiche dans les livraisons ci-dessous.
banner-test-not-sent = Aucun événement de test n’a été envoyé : { $reason }.
banner-enabled-recover-since = Webhook activé : les nouveaux événements sont de nouveau livrés. Pour récupérer ce qu’il a manqué, réessayez les événements en échec depuis qu’il a commencé à échouer (prérempli ci-dessous).
banner-enabled-recover = Webhook activé : les nouveaux événements sont de nouveau livrés. Pour récupérer ce qu’il a manqué, réessayez ses événements en échec ci-dessous.
banner-disabled = Webhook désactivé : plus rien ne lui est livré, et ce qui était en attente est abandonné.
banner-secret-rotated = Nouveau secret de signature. L’ancien continue de signer en parallèle pendant 24 heures, afin que le destinataire puisse basculer sans perdre de livraison. Copiez-le maintenant, il ne sera plus affiché :
banner-hook-deleted = Webhook supprimé. Plus rien n’est livré à son terminal.
banner-event-retried = L’événement { $event } est en file d’attente de livraison ; son statut s’affichera ici après la tentative.
banner-retried-leaves-filter = Il est maintenant en attente et ne correspond donc plus à ce filtre (statut : { $status }).
banner-not-retried = Non réessayé : { $reason }.
banner-event-discarded = L’événement { $event } est abandonné : il ne sera pas livré à ce webhook.
banner-discarded-leaves-filter = Il ne correspond plus à ce filtre.
banner-not-discarded = Non abandonné : { $reason }.
