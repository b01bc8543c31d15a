# A página Webhooks: o formulário de novo gancho, a pesquisa e os ganchos por escopo.

index-lead = Cada gancho envia os eventos que você escolher, assinados, para um ponto de extremidade de notificação. Os ganchos de nível de empresa recebem os eventos de todos os projetos da empresa; os de nível de projeto, os de um único projeto.
index-new-hook = Criar gancho
index-scope = Escopo
index-scope-placeholder = company:1 ou project:10
index-scope-no-tables = Nenhuma tabela <code>Company</code> ou <code>Project</code> para escolher: digite <code>company:&lt;id&gt;</code> ou <code>project:&lt;id&gt;</code>.
index-choose-scope = Escolha uma empresa ou um projeto…
index-company-level = Nível de empresa
index-project-level = Nível de projeto
index-company-id = empresa { $id }
index-project-id = projeto { $id }
index-endpoint = Ponto de extremidade de notificação
index-endpoint-hint = A URL para a qual o herald envia cada evento via POST.
index-authorization = Cabeçalho de autorização
index-authorization-placeholder = Basic c3a2… ou Bearer …
index-authorization-hint = Enviado como está no cabeçalho <code>Authorization</code> de cada entrega.
index-description = Descrição
index-save-endpoint = Salvar ponto de extremidade
index-find-hooks = Encontrar ganchos
index-hooks-in-all = { $count ->
        [one] { $count } gancho no total.
       *[other] { $count } ganchos no total.
    }
index-search-text = Ponto de extremidade ou descrição
index-search-event = Evento
index-search-event-placeholder = NewOpportunity ou Deal.update
index-search-status = Status
index-status-any = Qualquer
index-search = Pesquisar
index-show-all = Mostrar todos, por escopo
index-hooks-found = { $count ->
        [one] { $count } gancho encontrado
       *[other] { $count } ganchos encontrados
    }
index-no-match = Nenhum gancho corresponde.
index-next-page = Próxima página
index-company-hooks = Ganchos de nível de empresa
index-no-company-hook = Nenhum gancho de nível de empresa ainda.
index-project-hooks = Ganchos de nível de projeto
index-no-project-hook = Nenhum gancho de nível de projeto ainda.
index-subscriptions = Assinaturas de REST hooks
index-subscriptions-hint = Criadas por serviços externos via <code>EPT_WebhookSubscribe</code>; elas recebem seu gatilho para cada linha.
index-no-subscription = Nenhuma assinatura.

hooks-table-endpoint = Ponto de extremidade
hooks-table-scope = Escopo
hooks-table-status = Status
hooks-table-events = Eventos
hooks-table-created = Criado em (UTC)
