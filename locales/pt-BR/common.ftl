# O que todas as páginas compartilham: a moldura, a navegação, o login e as páginas de erro.

skip-to-content = Pular para o conteúdo
language = Idioma
nav-main = Principal
nav-webhooks = Webhooks
nav-scripts = Scripts
nav-api = API
nav-sign-out = Sair
back-to-webhooks = Voltar aos webhooks

sign-in-title = Entrar
sign-in-hint-beside-database = Insira um token de API de administrador deste herald: <code>{ $file }</code> ao lado do banco de dados, <code>HERALD_API_TOKEN</code> ou uma entrada <code>[[api_tokens]]</code> com a função admin.
sign-in-hint-working-directory = Insira um token de API de administrador deste herald: <code>{ $file }</code> no diretório de trabalho do herald, <code>HERALD_API_TOKEN</code> ou uma entrada <code>[[api_tokens]]</code> com a função admin.
sign-in-token = Token de API
sign-in-button = Entrar
sign-in-subscribe-token = Este token só pode usar os pontos de extremidade de REST hooks. Entre com um token de administrador.
sign-in-enter-token = Insira um token de API.
sign-in-invalid-token = Esse token não é válido.

error-refused = Recusado
error-cross-site-form = Este formulário foi enviado de outro site.
error-signed-out = Sessão encerrada
error-signed-out-message = Sua sessão terminou; entre novamente.
error-not-found = Não encontrado
error-no-such-file = Arquivo inexistente.
error-no-such-page = Página inexistente.
error-busy = Ocupado
error-went-wrong = Algo deu errado
error-not-possible = Não é possível
error-unreadable-form = Formulário ilegível
error-sign-in-form-too-large = O formulário de login era grande demais.
error-form-not-utf8 = O formulário contém texto que não está em UTF-8; nada foi salvo. Digite-o novamente ou cole-o de outra fonte.
error-form-expired = Formulário expirado
error-form-expired-message = Este formulário não pertence à sua sessão atual. Recarregue a página e tente novamente.
error-too-many-tries = Tentativas demais
error-too-many-tries-message = Tokens incorretos demais a partir deste endereço. Tente novamente em { $seconds ->
        [one] { $seconds } segundo
       *[other] { $seconds } segundos
    }.

# O script das páginas.
js-saving = Salvando…
js-saved = Salvo
js-not-saved = Não salvo:
js-deliveries-failed = Não foi possível carregar as entregas:
js-more-failed = Falha ao carregar mais entregas; clique para tentar novamente:
js-delivery-failed = Não foi possível carregar esta entrega:
js-copied = Copiado
js-select-and-copy = Selecione e copie

# Palavras que muitas páginas usam.
optional = (opcional)
none = nenhum

# O resultado de uma tentativa e o status de um evento.
outcome-success = Bem-sucedida
outcome-http-error = Erro HTTP
outcome-timeout = Tempo esgotado
outcome-connection-error = Falha na conexão
outcome-refused = Destino recusado
outcome-failed = Falhou
status-pending = Pendente
status-delivering = Entregando
status-delivered = Entregue
status-retrying = Tentando novamente
status-failed = Com falha
status-discarded = Descartado
status-unknown = Desconhecido

scope-subscription-to = Assinatura de REST hooks para { $trigger }
scope-subscription = Assinatura de REST hooks

# O status de um envio retroativo.
backfill-status-preparing = em preparação
backfill-status-running = em andamento
backfill-status-done = concluído
backfill-status-failed = com falha
backfill-status-cancelled = cancelado

# Por que um gancho está desativado.
disabled-by-administrator = desativado por um administrador
disabled-gone = o ponto de extremidade respondeu 410 Gone
disabled-failing = todas as tentativas falharam desde { $since } ({ $count ->
        [one] { $count } tentativa
       *[other] { $count } tentativas
    })
