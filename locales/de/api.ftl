# Die Seite „API-Referenz“ (die Texte der Operationen stammen aus dem OpenAPI-Dokument, auf Englisch).

api-title = API-Referenz
api-token-header = Senden Sie <code>{ $header }</code> bei jedem Aufruf mit, außer bei den mit <strong>{ api-no-token }</strong> gekennzeichneten.
api-errors-are-json = Fehler kommen als JSON:
api-openapi-document = Das maschinenlesbare Dokument für Client-Generatoren:
api-areas = Bereiche
api-no-token = Ohne Token
api-field = Feld
api-field-in = Ort
api-field-what = Beschreibung
api-required = erforderlich
api-answers = Antworten
