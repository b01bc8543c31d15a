# La page de référence de l’API (les textes des opérations viennent du document OpenAPI, en anglais).

api-title = Référence de l’API
api-token-header = Envoyez <code>{ $header }</code> avec chaque appel, sauf ceux marqués <strong>{ api-no-token }</strong>.
api-errors-are-json = Les erreurs sont en JSON :
api-openapi-document = Le document lisible par machine, pour les générateurs de clients :
api-areas = Domaines
api-no-token = Sans jeton
api-field = Champ
api-field-in = Emplacement
api-field-what = Description
api-required = obligatoire
api-answers = Réponses
