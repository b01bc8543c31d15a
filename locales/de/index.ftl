# Die Seite „Webhooks“: das Formular für einen neuen Hook, die Suche und die Hooks nach Geltungsbereich.

index-lead = Jeder Hook sendet die von Ihnen gewählten Ereignisse signiert an einen Benachrichtigungsendpunkt. Hooks auf Unternehmensebene erhalten die Ereignisse aller Projekte des Unternehmens, Hooks auf Projektebene die eines einzelnen Projekts.
index-new-hook = Neuer Hook
index-scope = Geltungsbereich
index-scope-placeholder = company:1 oder project:10
index-scope-no-tables = Keine Tabelle <code>Company</code> oder <code>Project</code> zur Auswahl: Geben Sie <code>company:&lt;id&gt;</code> oder <code>project:&lt;id&gt;</code> ein.
index-choose-scope = Wählen Sie ein Unternehmen oder Projekt…
index-company-level = Unternehmensebene
index-project-level = Projektebene
index-company-id = Unternehmen { $id }
index-project-id = Projekt { $id }
index-endpoint = Benachrichtigungsendpunkt
index-endpoint-hint = Die URL, an die herald jedes Ereignis per POST sendet.
index-authorization = Autorisierungs-Header
index-authorization-placeholder = Basic c3a2… oder Bearer …
index-authorization-hint = Wird unverändert im <code>Authorization</code>-Header jeder Zustellung gesendet.
index-description = Beschreibung
index-save-endpoint = Endpunkt speichern
index-find-hooks = Hooks suchen
index-hooks-in-all = { $count ->
        [one] Insgesamt { $count } Hook.
       *[other] Insgesamt { $count } Hooks.
    }
index-search-text = Endpunkt oder Beschreibung
index-search-event = Ereignis
index-search-event-placeholder = NewOpportunity oder Deal.update
index-search-status = Status
index-status-any = Alle
index-search = Suchen
index-show-all = Alle anzeigen, nach Geltungsbereich
index-hooks-found = { $count ->
        [one] { $count } Hook gefunden
       *[other] { $count } Hooks gefunden
    }
index-no-match = Kein Hook entspricht der Suche.
index-next-page = Nächste Seite
index-company-hooks = Hooks auf Unternehmensebene
index-no-company-hook = Noch kein Hook auf Unternehmensebene.
index-project-hooks = Hooks auf Projektebene
index-no-project-hook = Noch kein Hook auf Projektebene.
index-subscriptions = REST-Hooks-Abonnements
index-subscriptions-hint = Von externen Diensten über <code>EPT_WebhookSubscribe</code> angelegt; sie erhalten ihren Trigger für jede Zeile.
index-no-subscription = Kein Abonnement.

hooks-table-endpoint = Endpunkt
hooks-table-scope = Geltungsbereich
hooks-table-status = Status
hooks-table-events = Ereignisse
hooks-table-created = Erstellt (UTC)
