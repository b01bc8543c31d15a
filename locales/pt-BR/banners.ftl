# Os avisos que respondem a um formulário, exibidos onde ele foi clicado.

banner-choose-scope = escolha a empresa ou o projeto ao qual o gancho pertence
banner-endpoint-created = Ponto de extremidade salvo. Marque abaixo os eventos que ele deve receber. Cada entrega é assinada com este segredo; copie-o agora, ele não será exibido novamente:
banner-endpoint-not-saved = O ponto de extremidade não foi salvo: { $reason }.
banner-endpoint-saved = Ponto de extremidade salvo.
banner-nothing-to-retry = Nenhum evento com falha desde então: nada para tentar novamente.
banner-retried-since = { $count ->
        [one] { $count } evento está sendo entregue novamente.
       *[other] { $count } eventos estão sendo entregues novamente.
    }
banner-nothing-retried = Nenhuma nova tentativa foi feita: { $reason }.
banner-filter-saved = Filtro salvo: a partir de agora, só são entregues os eventos para os quais ele retorna true.
banner-filter-removed = Filtro removido: todos os eventos que o gancho seleciona são entregues.
banner-backfill-started = Envio retroativo iniciado: { $count ->
        [one] { $count } linha de { $event } foi enfileirada
       *[other] { $count } linhas de { $event } foram enfileiradas
    } em segundo plano, em ordem; o progresso aparece abaixo.
banner-backfill-not-started = Nenhum envio retroativo foi iniciado: { $reason }.
banner-backfill-cancelled = Envio retroativo cancelado após { $done } de { $count ->
        [one] { $count } linha
       *[other] { $count } linhas
    }; os eventos que ele enfileirou continuam na fila.
banner-not-cancelled = Não cancelado: { $reason }.
banner-test-sent = Evento de teste { $event } enviado: { $answer } em { $duration }.
banner-test-answered = Ele respondeu: { $body }
banner-test-retried = Ele será tentado novamente como qualquer outro evento; veja as entregas abaixo.
banner-test-no-answer-yet = Evento de teste { $event } enviado; o ponto de extremidade ainda não respondeu. A tentativa aparece nas entregas abaixo.
banner-test-not-sent = Nenhum evento de teste foi enviado: { $reason }.
banner-enabled-recover-since = Gancho ativado: novos eventos voltam a ser entregues. Para recuperar o que ele perdeu, tente novamente os eventos que falharam desde que ele começou a falhar (preenchido abaixo).
banner-enabled-recover = Gancho ativado: novos eventos voltam a ser entregues. Para recuperar o que ele perdeu, tente novamente abaixo os eventos dele que falharam.
banner-disabled = Gancho desativado: nada mais é entregue a ele, e o que estava aguardando é descartado.
banner-secret-rotated = Novo segredo de assinatura. O antigo continua assinando junto com ele por 24 horas, para que o receptor possa fazer a troca sem perder nenhuma entrega. Copie-o agora, ele não será exibido novamente:
banner-hook-deleted = Gancho excluído. Nada mais é entregue ao ponto de extremidade dele.
banner-event-retried = O evento { $event } está na fila para entrega; o status dele aparecerá aqui após a tentativa.
banner-retried-leaves-filter = Agora ele está pendente, então não corresponde mais a este filtro (status: { $status }).
banner-not-retried = Nova tentativa não realizada: { $reason }.
banner-event-discarded = O evento { $event } foi descartado: ele não será entregue a este gancho.
banner-discarded-leaves-filter = Ele não corresponde mais a este filtro.
banner-not-discarded = Não descartado: { $reason }.
