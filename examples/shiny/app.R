# A small Shiny app used by faucet's README and tests: type a name, see a greeting
# together with the worker that serves this session.
library(shiny)

ui <- fluidPage(
  titlePanel("faucet + Shiny"),
  textInput("name", "Your name", value = "world"),
  h3(textOutput("greeting")),
  p("Served by worker ", textOutput("worker", inline = TRUE))
)

server <- function(input, output, session) {
  output$greeting <- renderText(paste0("Hello, ", input$name, "!"))
  output$worker <- renderText(Sys.getenv("FAUCET_WORKER_ID"))
}

shinyApp(ui, server)
