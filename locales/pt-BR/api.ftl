# A página de referência da API (os textos das operações vêm do documento OpenAPI, em inglês).

api-title = Referência da API
api-token-header = Envie <code>{ $header }</code> em todas as chamadas, exceto nas marcadas como <strong>{ api-no-token }</strong>.
api-errors-are-json = Os erros vêm em JSON:
api-openapi-document = O documento legível por máquina, para geradores de clientes:
api-areas = Áreas
api-no-token = Sem token
api-field = Campo
api-field-in = Local
api-field-what = Descrição
api-required = obrigatório
api-answers = Respostas
