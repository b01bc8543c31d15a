# A página de um gancho: visão geral, ponto de extremidade, grade de recursos, filtro, envio retroativo, entregas e eventos.

hook-page-title = Gancho { $url }

## Visão geral

hook-overview-title = Visão geral
hook-count-delivered = { $count ->
        [one] entregue
       *[other] entregues
    }
hook-count-retrying = { $count ->
        [one] tentando novamente
       *[other] tentando novamente
    }
hook-count-retrying-hint = (uma tentativa falhou; a próxima está agendada)
hook-count-failed = { $count ->
        [one] com falha
       *[other] com falha
    }
hook-count-failed-hint = (nenhuma tentativa restante)
hook-count-pending = { $count ->
        [one] pendente
       *[other] pendentes
    }
hook-count-discarded = { $count ->
        [one] descartado
       *[other] descartados
    }
hook-status = Status
hook-badge-disabled = Desativado
hook-badge-failing = Falhando
hook-badge-enabled = Ativado
hook-failing = { $count ->
        [one] { $count } tentativa consecutiva com falha
       *[other] { $count } tentativas consecutivas com falha
    }
hook-failing-since = { $count ->
        [one] { $count } tentativa consecutiva com falha, desde { $since }
       *[other] { $count } tentativas consecutivas com falha, desde { $since }
    }
hook-endpoint = Ponto de extremidade
hook-rate-limit = Limite de taxa
hook-rate-limit-value = { $count ->
        [one] { $count } entrega por segundo
       *[other] { $count } entregas por segundo
    }
hook-rate-limit-waiting = { $count ->
        [one] { $count } aguardando a vez, há { $age }
       *[other] { $count } aguardando a vez, o mais antigo há { $age }
    }
hook-scope = Escopo
hook-authorization-header = Cabeçalho de autorização
hook-signing-secret = Segredo de assinatura
hook-previous-secret-until = o anterior também assina até { $until }
hook-last-delivery = Última entrega
hook-last-delivery-none = nenhuma ainda
hook-created = Criado em
hook-confirm-disable = Desativar este gancho? Os eventos que aguardam por ele são descartados, e nada é entregue ao seu ponto de extremidade até que ele seja ativado novamente.
hook-disable = Desativar gancho
hook-enable = Ativar gancho
hook-test-event = Evento a enviar
hook-send-test = Enviar evento de teste
hook-confirm-rotate-secret = Criar um novo segredo de assinatura? O atual continua assinando por 24 horas.
hook-rotate-secret = Renovar segredo
hook-confirm-delete = Excluir este gancho? Nada mais será entregue ao seu ponto de extremidade.
hook-delete = Excluir gancho

## Ponto de extremidade

hook-notification-endpoint = Ponto de extremidade de notificação
hook-authorization-keep = { $auth } (deixe vazio para manter)
hook-authorization-placeholder = Basic c3a2… ou Bearer …
hook-remove-authorization = Remover o cabeçalho
hook-description = Descrição
hook-rate-limit-placeholder = sem limite
hook-rate-limit-hint = O máximo de entregas por segundo enviadas a este ponto de extremidade; as demais aguardam a vez (atrasadas, não com falha).
hook-save-endpoint = Salvar ponto de extremidade

## Grade de recursos e gatilhos nomeados

hook-grid-title = Recursos
hook-grid-intro = Marque o que este gancho recebe. Cada caixa é salva no momento em que é clicada e vale a partir da próxima alteração.
hook-grid-noscript = As caixas são salvas com JavaScript, que está desativado: use a API (<code>PUT /api/v1/hooks/{ $id }/grid/&lt;resource&gt;/&lt;action&gt;</code>).
hook-resource = Recurso
hook-grid-create = Criar
hook-grid-update = Atualizar
hook-grid-delete = Excluir
hook-grid-saved = Salvo
hook-grid-cell-create = { $resource }: criar
hook-grid-cell-update = { $resource }: atualizar
hook-grid-cell-delete = { $resource }: excluir
hook-triggers-title = Gatilhos nomeados
hook-triggers-none = Nenhum script de corpo define um gatilho ainda
hook-triggers-none-link = scripts
hook-trigger = Gatilho
hook-trigger-receive = Receber
hook-script-missing-title = o script de corpo dele não existe mais
hook-script-missing = script ausente

## Filtro

hook-filter-title = Filtro
hook-filter-intro = Somente os eventos para os quais esta expressão retorna <code>true</code> são entregues a este gancho. Ela vê <code>payload</code> (o corpo, um mapa), <code>event</code> (<code>"NewOpportunity"</code>, <code>"Deal.update"</code>) e <code>change</code>, e é escrita na linguagem dos scripts, por exemplo <code>payload.amount &gt;= 100000 &amp;&amp; payload.company.city == "Lyon"</code>. Vazia: todos os eventos são entregues.
hook-filter-expression = Expressão de filtro
hook-save-filter = Salvar filtro
hook-try-filter = Testar nos exemplos
hook-filtered-out = { $count ->
        [one] { $count } evento barrado deste gancho pelo filtro até agora.
       *[other] { $count } eventos barrados deste gancho pelo filtro até agora.
    }
hook-samples-title = Nos exemplos
hook-samples-no-filter = (sem filtro: todos são entregues)
hook-samples-none = Nenhum exemplo: marque um evento acima ou adicione linhas.
hook-event = Evento
hook-sample-payload = Exemplo de carga útil
hook-sample-result = Resultado
hook-sample-error = Erro
hook-sample-delivered = Entregue
hook-sample-kept-out = Barrado
hook-sample-unavailable = Nenhum exemplo de { $event }: { $reason }

## Envio retroativo

hook-backfill-title = Envio retroativo
hook-backfill-intro = Envie os registros que já existem, como eventos de um gatilho que este gancho seleciona: o script de corpo dele renderiza cada linha que a consulta retorna, e os eventos são enfileirados somente para este gancho, na ordem da consulta, ao lado dos eventos ao vivo.
hook-backfill-needs-trigger = Um envio retroativo precisa de algo para enviar: marque primeiro acima um gatilho nomeado, ou a criação ou atualização de um recurso.
hook-backfill-resource-hint = Um evento de recurso (como Deal.create) envia cada linha como ela está agora, no envelope do evento de recurso, com old_row nulo.
hook-backfill-query = Linhas: uma consulta que retorna os IDs delas, na ordem em que devem ser enviadas
hook-start-backfill = Iniciar envio retroativo
hook-backfill-started = Iniciado (UTC)
hook-backfill-progress = Progresso
hook-action = Ação
hook-backfill-failed-rows = { $count ->
        [one] ({ $count } linha não renderizada)
       *[other] ({ $count } linhas não renderizadas)
    }
hook-confirm-cancel-backfill = Cancelar este envio retroativo? Nenhuma outra linha dele é enfileirada; os eventos já enfileirados continuam na fila.
hook-cancel-backfill = Cancelar

## Entregas

hook-deliveries-title = Entregas
hook-only-failures = Mostrar somente falhas
hook-apply = Aplicar
hook-deliveries-intro = Todas as tentativas, das mais recentes para as mais antigas. Abra uma para ver a carga útil da solicitação e o que o ponto de extremidade respondeu.

## Eventos

hook-events-title = Eventos
hook-any = Qualquer
hook-event-type = Tipo de evento
hook-events-filter = Filtrar
hook-events-none-match = Nenhum evento corresponde a estes filtros.
hook-events-none-yet = Nenhum evento ainda.
hook-resource-name = Nome do recurso
hook-resource-id = ID do recurso
hook-event-status = Status do evento
hook-timestamp = Carimbo de data/hora (UTC)
hook-attempts = Tentativas
hook-badge-test = Teste
hook-badge-backfill = Envio retroativo
hook-next-try = próxima tentativa { $time }
hook-held = Retido: o filtro falhou
hook-held-hint = Corrija o filtro (ele avalia este evento novamente ao ser salvo) ou clique em Tentar novamente para avaliá-lo agora.
hook-retry-event = Tentar novamente o evento { $id }
hook-retry = Tentar novamente
hook-confirm-discard = Descartar este evento? Ele não será entregue a este gancho (Tentar novamente o envia depois).
hook-discard-event = Descartar o evento { $id }
hook-discard = Descartar
hook-newest-events = Eventos mais recentes
hook-older-events = Eventos mais antigos
hook-recover-title = Recuperar após uma interrupção
hook-recover-intro = Entregue novamente todos os eventos que falharam desde um momento, quando o ponto de extremidade voltar.
hook-recover-since = Com falha desde (UTC)
hook-recover-include-discarded = também os descartados enquanto o gancho estava desativado
hook-retry-failed = Tentar novamente os eventos com falha

## O botão de cópia do banner (um novo segredo de assinatura)

hook-copy-secret = Copiar o segredo
hook-copy = Copiar
