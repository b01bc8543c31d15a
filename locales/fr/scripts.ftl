# La page Scripts : le dossier des scripts, les nœuds, les triggers, les fichiers et les événements de ressource.

scripts-title = Scripts
scripts-lead = Le dossier <code>{ $folder }</code>, tel que chargé le { $time }.
scripts-lead-reload = herald le recharge quand un fichier change ; un fichier qui ne compile pas laisse sa version précédente active.
scripts-errors = { $count ->
        [one] { $count } script ne compile pas.
       *[other] { $count } scripts ne compilent pas.
    } Vous trouverez la ligne et la colonne ci-dessous.
scripts-missing-trigger = Le trigger <strong>{ $trigger }</strong> est sélectionné par { $count ->
        [one] { $count } webhook
       *[other] { $count } webhooks
    }, mais aucun fichier <code>GetWebhookResponseBody_{ $trigger }.rhai</code> ne le définit plus.

scripts-nodes = Nœuds
scripts-nodes-intro = Les processus herald de cette base de données. Un seul à la fois consomme le journal des modifications : ses scripts décident quels événements sont déclenchés et en produisent le contenu.
scripts-nodes-served-by = Cette page a été servie par <strong>{ $node }</strong>.
scripts-nodes-differ = Les nœuds n’exécutent pas les mêmes scripts : comparez leurs jeux de scripts ci-dessous. Les événements sont produits par les scripts du nœud consommateur.
scripts-node = Nœud
scripts-node-state = État
scripts-node-role = Rôle
scripts-node-heartbeat = Dernier signal de vie
scripts-node-script-set = Jeu de scripts
scripts-node-started = Démarré
scripts-node-version = Version
scripts-node-up = actif
scripts-node-gone = disparu
scripts-node-consumer = consomme le journal des modifications
scripts-node-deliverer = livre et répond aux requêtes
scripts-node-heartbeat-ago = il y a { $seconds } s

scripts-triggers = Triggers
scripts-no-trigger = Aucun script de corps ne définit de trigger.
scripts-status-compiles = compile
scripts-status-error = erreur
scripts-status-ok = ok
scripts-hooks = { $count ->
        [one] { $count } webhook
       *[other] { $count } webhooks
    }
scripts-version = version
# L’emplacement d’une erreur de script ; 0 est une ligne ou une colonne inconnue.
scripts-error-at = Ligne { $line ->
        [0] ?
       *[other] { $line }
    }, colonne { $column ->
        [0] ?
       *[other] { $column }
    } :
scripts-sample-payload = Exemple de charge utile
scripts-no-sample = Pas encore de ligne à partir de laquelle construire un exemple.

scripts-files = Fichiers
scripts-file = Fichier
scripts-file-kind = Type
scripts-file-trigger-or-table = Trigger ou table
scripts-file-status = Statut
scripts-file-live-version = Version active
scripts-not-a-script-name = pas un nom de script
scripts-no-live-version = aucune

scripts-resource-events = Événements de ressource
scripts-resource-events-intro = Chaque table de l’application, telle que la grille de ressources la propose : une enveloppe autour de la ligne modifiée, sans aucun script.
scripts-resource-event = Événement
scripts-resource-hooks = Webhooks
scripts-resource-sample = Exemple
scripts-show-sample = Afficher
scripts-no-row-yet = pas encore de ligne
scripts-kind-body = corps
scripts-kind-notification = notification
