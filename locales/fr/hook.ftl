# La page d’un webhook : vue d’ensemble, terminal, grille de ressources, filtre, rattrapage, livraisons et événements.

hook-page-title = Webhook { $url }

## Vue d’ensemble

hook-overview-title = Vue d’ensemble
hook-count-delivered = { $count ->
        [one] livré
       *[other] livrés
    }
hook-count-retrying = { $count ->
        [one] nouvelle tentative prévue
       *[other] nouvelles tentatives prévues
    }
hook-count-retrying-hint = (une tentative a échoué ; la suivante est programmée)
hook-count-failed = { $count ->
        [one] en échec
       *[other] en échec
    }
hook-count-failed-hint = (plus aucune tentative)
hook-count-pending = { $count ->
        [one] en attente
       *[other] en attente
    }
hook-count-discarded = { $count ->
        [one] abandonné
       *[other] abandonnés
    }
hook-status = Statut
hook-badge-disabled = Désactivé
hook-badge-failing = Défaillant
hook-badge-enabled = Activé
hook-failing = { $count ->
        [one] { $count } tentative échouée d’affilée
       *[other] { $count } tentatives échouées d’affilée
    }
hook-failing-since = { $count ->
        [one] { $count } tentative échouée d’affilée, depuis le { $since }
       *[other] { $count } tentatives échouées d’affilée, depuis le { $since }
    }
hook-endpoint = Terminal
hook-rate-limit = Limite de débit
hook-rate-limit-value = { $count ->
        [one] { $count } livraison par seconde
       *[other] { $count } livraisons par seconde
    }
hook-rate-limit-waiting = { $count ->
        [one] { $count } attend son tour, depuis { $age }
       *[other] { $count } attendent leur tour, le plus ancien depuis { $age }
    }
hook-scope = Portée
hook-authorization-header = En-tête d’autorisation
hook-signing-secret = Secret de signature
hook-previous-secret-until = l’ancien signe aussi jusqu’au { $until }
hook-last-delivery = Dernière livraison
hook-last-delivery-none = aucune pour l’instant
hook-created = Créé le
hook-confirm-disable = Désactiver ce webhook ? Les événements qui l’attendent sont abandonnés, et plus rien n’est livré à son terminal tant qu’il n’est pas réactivé.
hook-disable = Désactiver le webhook
hook-enable = Activer le webhook
hook-test-event = Événement à envoyer
hook-send-test = Envoyer un événement de test
hook-confirm-rotate-secret = Créer un nouveau secret de signature ? L’actuel continue de signer pendant 24 heures.
hook-rotate-secret = Renouveler le secret
hook-confirm-delete = Supprimer ce webhook ? Plus rien ne sera livré à son terminal.
hook-delete = Supprimer le webhook

## Terminal

hook-notification-endpoint = Terminal de notification
hook-authorization-keep = { $auth } (laisser vide pour le conserver)
hook-authorization-placeholder = Basic c3a2… ou Bearer …
hook-remove-authorization = Supprimer l’en-tête
hook-description = Description
hook-rate-limit-placeholder = aucune limite
hook-rate-limit-hint = Le nombre maximal de livraisons par seconde envoyées à ce terminal ; les autres attendent leur tour (retardées, pas en échec).
hook-save-endpoint = Enregistrer le terminal

## Grille de ressources et triggers nommés

hook-grid-title = Ressources
hook-grid-intro = Cochez ce que ce webhook reçoit. Chaque case s’enregistre dès que vous cliquez dessus et prend effet dès la modification suivante.
hook-grid-noscript = Les cases s’enregistrent avec JavaScript, qui est désactivé : utilisez l’API (<code>PUT /api/v1/hooks/{ $id }/grid/&lt;resource&gt;/&lt;action&gt;</code>).
hook-resource = Ressource
hook-grid-create = Créer
hook-grid-update = Mettre à jour
hook-grid-delete = Supprimer
hook-grid-saved = Enregistré
hook-grid-cell-create = { $resource } : créer
hook-grid-cell-update = { $resource } : mettre à jour
hook-grid-cell-delete = { $resource } : supprimer
hook-triggers-title = Triggers nommés
hook-triggers-none = Aucun script de corps ne définit encore de trigger
hook-triggers-none-link = scripts
hook-trigger = Trigger
hook-trigger-receive = Recevoir
hook-script-missing-title = son script de corps n’existe plus
hook-script-missing = script manquant

## Filtre

hook-filter-title = Filtre
hook-filter-intro = Seuls les événements pour lesquels cette expression renvoie <code>true</code> sont livrés à ce webhook. Elle voit <code>payload</code> (le corps, sous forme de map), <code>event</code> (<code>"NewOpportunity"</code>, <code>"Deal.update"</code>) et <code>change</code>, et s’écrit dans le langage des scripts, par exemple <code>payload.amount &gt;= 100000 &amp;&amp; payload.company.city == "Lyon"</code>. Vide : chaque événement est livré.
hook-filter-expression = Expression de filtre
hook-save-filter = Enregistrer le filtre
hook-try-filter = Essayer sur les exemples
hook-filtered-out = { $count ->
        [one] { $count } événement écarté de ce webhook par son filtre jusqu’ici.
       *[other] { $count } événements écartés de ce webhook par son filtre jusqu’ici.
    }
hook-samples-title = Sur les exemples
hook-samples-no-filter = (aucun filtre : chacun est livré)
hook-samples-none = Aucun exemple : cochez un événement ci-dessus, ou ajoutez des lignes.
hook-event = Événement
hook-sample-payload = Exemple de charge utile
hook-sample-result = Résultat
hook-sample-error = Erreur
hook-sample-delivered = Livré
hook-sample-kept-out = Écarté
hook-sample-unavailable = Aucun exemple de { $event } : { $reason }

## Rattrapage

hook-backfill-title = Rattrapage
hook-backfill-intro = Envoyez les enregistrements qui existent déjà, comme événements d’un trigger que ce webhook sélectionne : son script de corps rend chaque ligne renvoyée par la requête, et les événements sont mis en file d’attente pour ce webhook seulement, dans l’ordre de la requête, à côté des événements en direct.
hook-backfill-needs-trigger = Un rattrapage a besoin de quelque chose à envoyer : cochez d’abord ci-dessus un trigger nommé, ou la création ou la mise à jour d’une ressource.
hook-backfill-resource-hint = Un événement de ressource (comme Deal.create) envoie chaque ligne telle qu’elle est maintenant, dans l’enveloppe de l’événement de ressource, avec old_row à null.
hook-backfill-query = Lignes : une requête qui renvoie leurs identifiants, dans l’ordre d’envoi
hook-start-backfill = Lancer le rattrapage
hook-backfill-started = Lancé (UTC)
hook-backfill-progress = Progression
hook-action = Action
hook-backfill-failed-rows = { $count ->
        [one] ({ $count } ligne non rendue)
       *[other] ({ $count } lignes non rendues)
    }
hook-confirm-cancel-backfill = Annuler ce rattrapage ? Aucune autre de ses lignes n’est mise en file d’attente ; les événements déjà mis en file d’attente y restent.
hook-cancel-backfill = Annuler

## Livraisons

hook-deliveries-title = Livraisons
hook-only-failures = Afficher uniquement les échecs
hook-apply = Appliquer
hook-deliveries-intro = Chaque tentative, de la plus récente à la plus ancienne. Ouvrez-en une pour voir la charge utile de la demande et la réponse du terminal.

## Événements

hook-events-title = Événements
hook-any = Tous
hook-event-type = Type d’événement
hook-events-filter = Filtrer
hook-events-none-match = Aucun événement ne correspond à ces filtres.
hook-events-none-yet = Aucun événement pour l’instant.
hook-resource-name = Nom de la ressource
hook-resource-id = ID de la ressource
hook-event-status = Statut de l’événement
hook-timestamp = Horodatage (UTC)
hook-attempts = Tentatives
hook-badge-test = Test
hook-badge-backfill = Rattrapage
hook-next-try = prochaine tentative : { $time }
hook-held = Retenu : le filtre a échoué
hook-held-hint = Corrigez le filtre (il juge de nouveau cet événement à l’enregistrement), ou cliquez sur Réessayer pour le juger de nouveau dès maintenant.
hook-retry-event = Réessayer l’événement { $id }
hook-retry = Réessayer
hook-confirm-discard = Abandonner cet événement ? Il ne sera pas livré à ce webhook (Réessayer le renverra plus tard).
hook-discard-event = Abandonner l’événement { $id }
hook-discard = Abandonner
hook-newest-events = Événements les plus récents
hook-older-events = Événements plus anciens
hook-recover-title = Récupérer après une panne
hook-recover-intro = Livrez de nouveau chaque événement en échec depuis un moment donné, une fois le terminal rétabli.
hook-recover-since = En échec depuis (UTC)
hook-recover-include-discarded = y compris ceux abandonnés pendant que le webhook était désactivé
hook-retry-failed = Réessayer les événements en échec

## Le bouton de copie de la bannière (un nouveau secret de signature)

hook-copy-secret = Copier le secret
hook-copy = Copier
