# La page Webhooks : le formulaire de nouveau webhook, la recherche et les webhooks par portée.

index-lead = Chaque webhook envoie les événements que vous choisissez, signés, à un terminal de notification. Les webhooks au niveau entreprise reçoivent les événements de tous les projets de l’entreprise ; les webhooks au niveau du projet, ceux d’un seul projet.
index-new-hook = Nouveau webhook
index-scope = Portée
index-scope-placeholder = company:1 ou project:10
index-scope-no-tables = Aucune table <code>Company</code> ou <code>Project</code> où choisir : saisissez <code>company:&lt;id&gt;</code> ou <code>project:&lt;id&gt;</code>.
index-choose-scope = Choisissez une entreprise ou un projet…
index-company-level = Niveau entreprise
index-project-level = Niveau du projet
index-company-id = entreprise { $id }
index-project-id = projet { $id }
index-endpoint = Terminal de notification
index-endpoint-hint = L’URL à laquelle herald envoie chaque événement par POST.
index-authorization = En-tête d’autorisation
index-authorization-placeholder = Basic c3a2… ou Bearer …
index-authorization-hint = Envoyé tel quel dans l’en-tête <code>Authorization</code> de chaque livraison.
index-description = Description
index-save-endpoint = Enregistrer le terminal
index-find-hooks = Rechercher des webhooks
index-hooks-in-all = { $count ->
        [one] { $count } webhook au total.
       *[other] { $count } webhooks au total.
    }
index-search-text = Terminal ou description
index-search-event = Événement
index-search-event-placeholder = NewOpportunity ou Deal.update
index-search-status = Statut
index-status-any = Tous
index-search = Rechercher
index-show-all = Tout afficher, par portée
index-hooks-found = { $count ->
        [one] { $count } webhook trouvé
       *[other] { $count } webhooks trouvés
    }
index-no-match = Aucun webhook ne correspond.
index-next-page = Page suivante
index-company-hooks = Webhooks au niveau entreprise
index-no-company-hook = Aucun webhook au niveau entreprise pour l’instant.
index-project-hooks = Webhooks au niveau du projet
index-no-project-hook = Aucun webhook au niveau du projet pour l’instant.
index-subscriptions = Abonnements REST hooks
index-subscriptions-hint = Créés par des services externes via <code>EPT_WebhookSubscribe</code> ; ils reçoivent leur trigger pour chaque ligne.
index-no-subscription = Aucun abonnement.

hooks-table-endpoint = Terminal
hooks-table-scope = Portée
hooks-table-status = Statut
hooks-table-events = Événements
hooks-table-created = Créé (UTC)
