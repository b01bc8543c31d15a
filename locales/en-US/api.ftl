# The API reference page (the operations' own texts come from the OpenAPI document, in English).

api-title = API reference
api-token-header = Send <code>{ $header }</code> with every call but those marked <strong>{ api-no-token }</strong>.
api-errors-are-json = Errors are JSON:
api-openapi-document = The machine-readable document, for client generators:
api-areas = Areas
api-no-token = No token
api-field = Field
api-field-in = In
api-field-what = What
api-required = required
api-answers = Answers
